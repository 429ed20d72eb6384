"""The runs table of a large sweep in a real browser (the system Chromium through playwright): the first hundred
runs drawn in the order asked for, more on request."""

from __future__ import annotations

import shutil

import pytest

from tests.ui.test_ui_api import browsing

pytest.importorskip("starlette", reason="convexp ui needs the ui extra: pip install 'convexp[ui]'")
pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if shutil.which("chromium") is None and shutil.which("chromium-browser") is None:
    pytest.skip("Chromium is not installed (Debian: apt-get install chromium)", allow_module_level=True)


def test_a_table_of_many_runs_draws_its_first_hundred_and_shows_more_on_request(tmp_path):
    from convexp.store import Store

    db = tmp_path / "many.db"
    with Store(str(db)) as store:
        for index in range(230):
            run_id = store.create_run(
                experiment="many", backend="external", seed=index, dataset="external", kernel_initializer="glorot_uniform",
                bias_initializer="zeros", spec={"dataset": "external", "config": {"width": index % 7, "depth": index % 3}},
                convexp_version="0.1.0", backend_version="0.1.0", framework="external", framework_version="0",
            )  # fmt: skip
            store.finish_run(run_id, "finished")
    with browsing(db) as session:
        page = session["new_page"]()
        page.goto(session["url"] + "?experiment=many&desc=1")
        page.wait_for_selector("#runs-table tbody tr")
        shown = lambda: page.eval_on_selector_all("#runs-table tbody tr", "rows => rows.map(r => Number(r.dataset.run))")  # noqa: E731
        assert shown() == list(range(230, 130, -1))  # the first hundred in the order asked for
        assert page.text_content("#runs-count") == "230 of 230 run(s)" and page.text_content("#more-count") == "100 of 230 shown"
        page.click("#show-more")
        assert shown() == list(range(230, 30, -1))
        page.click("#show-all")
        assert shown() == list(range(230, 0, -1)) and page.locator("#more-runs").is_hidden()
        assert page.eval_on_selector_all("#runs-table th.param", "ths => ths.map(th => th.textContent)") == [
            "config.width",
            "config.depth",
        ]
        page.close()
