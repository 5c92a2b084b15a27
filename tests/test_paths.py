"""A notebook in notebooks/ (or any subfolder) uses the project's store, not a second one beside it."""

from pathlib import Path

from workbench import paths


def test_results_dir_is_the_projects_from_any_subfolder(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBENCH_RESULTS", raising=False)
    project = tmp_path / "project"
    (project / "notebooks" / "deep").mkdir(parents=True)
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    monkeypatch.chdir(project / "notebooks" / "deep")
    assert paths.results_dir() == project.resolve() / "results"
    monkeypatch.setenv("WORKBENCH_RESULTS", str(tmp_path / "elsewhere"))
    assert paths.results_dir() == tmp_path / "elsewhere"


def test_results_dir_outside_a_project_is_the_working_folders(tmp_path, monkeypatch):
    monkeypatch.delenv("WORKBENCH_RESULTS", raising=False)
    monkeypatch.chdir(tmp_path)
    if paths.project_root() is None:  # a temp folder inside no project
        assert paths.results_dir() == Path("results")


def test_notebooks_do_not_set_their_own_store():
    for notebook in sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb")):
        text = notebook.read_text()
        assert '"results"' not in text and 'WORKBENCH_RESULTS\\", \\"results' not in text, notebook.name
        assert "notebook_figures()" in text, notebook.name
