"""bench.scaleout's report: the table, and its block in RESULTS.md kept across rewrites."""

from __future__ import annotations

from pathlib import Path

from bench.scaleout import BEGIN, END, Run, preserved_section, render, write_section


def test_render_reports_speed_up_and_efficiency_against_one_replica() -> None:
    """Each replica count gets its median, the speed-up over one replica and the share of linear."""
    text = render(
        {1: [Run(700.0, 700.0), Run(720.0, 720.0)], 2: [Run(1_300.0, 1_500.0)], 4: [Run(2_100.0, 2_800.0)]},
        count=24_000,
        concurrency=16,
        command="python -m bench.scaleout",
        broker="external broker",
    )
    assert text.startswith(BEGIN) and text.rstrip().endswith(END)
    assert "| 1 | 710 | 700, 720 | 1.00x | 100% | 710 | 89% |" in text
    assert "| 2 | 1,300 | 1,300 | 1.83x | 92% | 1,500 | 94% |" in text
    assert "| 4 | 2,100 | 2,100 | 2.96x | 74% | 2,800 | 88% |" in text


def test_section_replaces_its_block_and_survives_a_rewrite(tmp_path: Path) -> None:
    """write_section appends the block once, then replaces it; preserved_section returns it for reuse."""
    results = tmp_path / "RESULTS.md"
    results.write_text("# Results\n\nsuite tables\n")
    write_section(results, f"{BEGIN}\nfirst\n{END}\n")
    write_section(results, f"{BEGIN}\nsecond\n{END}\n")
    text = results.read_text()
    assert text.count(BEGIN) == 1 and "second" in text and "first" not in text
    assert text.startswith("# Results\n\nsuite tables\n")
    assert preserved_section(results) == f"{BEGIN}\nsecond\n{END}\n"
    assert preserved_section(tmp_path / "missing.md") == ""
