"""The partitioned layout: ``metrics`` cut into one partition a day (docs/partitions.md).

- :mod:`.layout`: which tables are cut and how, and what the catalog says;
- :mod:`.build`: the partitioned tables, derived from the plain ones;
- :mod:`.keeper`: the background job that makes partitions ahead and
  empties the DEFAULT partition (:class:`~.keeper.PartitionKeeper`);
- :mod:`.purge`: retention by whole partitions;
- :mod:`.convert`: a plain table converted while apps write
  (:func:`~.convert.to_partitioned`);
- :mod:`.status`: the summary's view; :mod:`.command`: the command line.

``mnemo_obs.apply_schema(dsn, partitioned=True)`` creates the layout.
Nothing is imported here, so that the retention and schema modules can use
these without an import cycle.
"""
