// Numbers and times as shown. The API rounds to 2 decimals already; this only
// adds the reader's thousands separators and units.

export const NONE = "—";

export function number(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(Number(value))) return NONE;
  return Number(value).toLocaleString(undefined, { maximumFractionDigits: digits });
}

export function ms(value) {
  return value === null || value === undefined ? NONE : `${number(value)} ms`;
}

export function percent(value) {
  return value === null || value === undefined ? NONE : `${number(value)} %`;
}

export function perSecond(value) {
  return value === null || value === undefined ? NONE : `${number(value)}/s`;
}

/** A total time in milliseconds, in the largest unit that keeps it readable. */
export function duration(value) {
  if (value === null || value === undefined) return NONE;
  if (value < 1000) return `${number(value)} ms`;
  if (value < 120000) return `${number(value / 1000)} s`;
  if (value < 7200000) return `${number(value / 60000, 1)} min`;
  return `${number(value / 3600000, 1)} h`;
}

export function megabytes(value) {
  if (value === null || value === undefined) return NONE;
  return value >= 1024 ? `${number(value / 1024)} GB` : `${number(value)} MB`;
}

/** The time of day of an ISO timestamp, in the reader's time zone. */
export function clock(iso) {
  const date = iso instanceof Date ? iso : new Date(iso);
  return Number.isNaN(date.getTime()) ? NONE : date.toLocaleTimeString();
}

/** Date and time of an ISO timestamp, in the reader's time zone. */
export function dateTime(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? NONE : date.toLocaleString();
}
