"""The screenshots in docs/ are made by tests.dashboard_screenshots: it must keep working."""

from __future__ import annotations

from pathlib import Path

from .dashboard_screenshots import SHOTS, make, png_size


def test_the_screenshot_script_makes_its_images(
    dsn: str, redis_url: str, browser, tmp_path: Path
) -> None:
    made = make(dsn, tmp_path, redis_url, browser)
    assert [p.name for p in made] == [name for name, *_rest in SHOTS]
    for path, (_name, _scheme, width, _height, top) in zip(made, SHOTS, strict=True):
        shot_width, shot_height = png_size(path)
        if isinstance(top, str):  # one part of the page: as wide as it is
            assert width * 0.9 <= shot_width <= width and shot_height >= 300
        else:
            assert shot_width == width
            assert shot_height >= 800 and (top is None or shot_height <= top)
        assert path.stat().st_size > 20_000  # drawn, not blank


def test_the_readme_shows_the_screenshot() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    assert "](docs/dashboard.png)" in readme
    assert (Path(__file__).resolve().parent.parent / "docs" / "dashboard.png").is_file()
