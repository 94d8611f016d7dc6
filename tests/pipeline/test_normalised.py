"""Executed notebooks keep nothing that differs between two identical runs."""

from __future__ import annotations

import nbformat

from dicelib import config
from dicelib.io import normalised


def test_normalised_drops_timestamps_stderr_random_ids_and_absolute_paths():
    nb = nbformat.v4.new_notebook()
    nb.metadata["papermill"] = {"start_time": "2026-01-01", "end_time": "x", "duration": 1.5, "parameters": {"seed": 0}}
    cell = nbformat.v4.new_code_cell("print(1)")
    cell.metadata["execution"] = {"iopub.status.busy": "2026-01-01"}
    cell.metadata["papermill"] = {"duration": 0.1, "status": "completed"}
    cell.outputs = [nbformat.v4.new_output("stream", name="stderr", text="50%|#####     | 1/2\r"),
                    nbformat.v4.new_output("stream", name="stdout", text=f"wrote {config.ROOT}/reports/x.png\n"),
                    nbformat.v4.new_output("execute_result", data={"text/plain": f"PosixPath('{config.ROOT}/a')"},
                                           execution_count=1)]
    nb.cells = [nbformat.v4.new_markdown_cell("# title"), cell]
    out = normalised(nb)
    assert out.metadata.papermill == {"parameters": {"seed": 0}}
    assert [c.id for c in out.cells] == ["cell-0", "cell-1"]
    assert "execution" not in out.cells[1].metadata and out.cells[1].metadata.papermill == {"status": "completed"}
    assert [o.get("name") for o in out.cells[1].outputs] == ["stdout", None]
    assert out.cells[1].outputs[0]["text"] == "wrote ./reports/x.png\n"
    assert out.cells[1].outputs[1]["data"]["text/plain"] == "PosixPath('./a')"
    nbformat.validate(out)


def test_normalised_renumbers_widget_models_by_their_order():
    a, b = "0350c0006ad846f58dd11ddc11c18307", "9f1e2d3c4b5a69788796a5b4c3d2e1f0"
    nb = nbformat.v4.new_notebook()
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"version_major": 2, "version_minor": 0, "state": {
        b: {"model_name": "VBoxModel", "state": {"children": [f"IPY_MODEL_{a}"]}}, a: {"model_name": "ImageModel", "state": {}}}}}
    cell = nbformat.v4.new_code_cell("w")
    cell.outputs = [nbformat.v4.new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": b, "version_major": 2, "version_minor": 0}, "text/plain": "VBox()"})]
    nb.cells = [cell]
    out = normalised(nb)
    state = out.metadata["widgets"]["application/vnd.jupyter.widget-state+json"]["state"]
    first, second = "0" * 32, "0" * 31 + "1"
    assert list(state) == [first, second] and state[first]["state"]["children"] == [f"IPY_MODEL_{second}"]
    assert out.cells[0].outputs[0]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"] == first
