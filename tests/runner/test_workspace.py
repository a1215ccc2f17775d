"""Job directory trees: reused from job to job, and nothing of one job reaches the next."""

from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

import pytest

from conveyor.runner.shell import resolve_shell, write_script
from conveyor.runner.workspace import JobDirs, Slots, rewrite, step_files


def use(dirs: JobDirs) -> None:
    """What a job leaves behind: files everywhere it may write."""
    (dirs.workspace / "build").mkdir()
    (dirs.workspace / "build" / "out.bin").write_bytes(b"secret build output")
    (dirs.temp / "cache.txt").write_text("temp data")
    (dirs.tool_cache / "node").mkdir()
    for path in step_files(dirs).values():
        Path(path).write_text("KEY=value\n")
    write_script(str(dirs.files), "echo $SECRET_TOKEN\n", resolve_shell("bash"))


def holds_data(dirs: JobDirs) -> list[Path]:
    found = [p for p in dirs.root.rglob("*") if p.is_file() and p.stat().st_size]
    return found + list(dirs.workspace.iterdir()) + list(dirs.tool_cache.iterdir())


def test_a_released_tree_is_emptied_and_given_to_the_next_job(tmp_path: Path) -> None:
    slots = Slots(str(tmp_path))
    first = slots.acquire(None, bind=False, name="acme/widget")
    assert first.workspace.name == "widget" and first.workspace.is_dir()
    use(first)
    slots.release(first)
    second = slots.acquire(None, bind=False, name="acme/widget")
    assert second.root == first.root
    assert holds_data(second) == []
    assert second.temp.is_dir() and second.files.is_dir()


def test_jobs_running_at_once_get_trees_of_their_own(tmp_path: Path) -> None:
    slots = Slots(str(tmp_path))
    a, b = slots.acquire(None, bind=False), slots.acquire(None, bind=False)
    assert a.root != b.root
    slots.release(a)
    slots.release(b)
    assert {slots.acquire(None, bind=False).root for _ in range(2)} == {a.root, b.root}


def test_another_repository_replaces_the_last_ones_workspace(tmp_path: Path) -> None:
    slots = Slots(str(tmp_path))
    dirs = slots.acquire(None, bind=False, name="acme/widget")
    slots.release(dirs)
    dirs = slots.acquire(None, bind=False, name="acme/gadget")
    assert [p.name for p in dirs.workspace.parent.iterdir()] == ["gadget"]


def test_the_next_job_of_a_repository_gets_its_workspace_back_empty_and_writable(
    tmp_path: Path,
) -> None:
    slots = Slots(str(tmp_path))
    first = slots.acquire(None, bind=False, name="acme/widget")
    use(first)
    (first.workspace / ".hidden").write_text("left by the job")
    kept = first.workspace.stat().st_ino
    os.chmod(first.workspace, 0o500)  # a job may lock it against writes
    slots.release(first)
    second = slots.acquire(None, bind=False, name="acme/widget")
    assert second.workspace == first.workspace and second.workspace.stat().st_ino == kept
    assert list(second.workspace.iterdir()) == []
    assert stat.S_IMODE(second.workspace.stat().st_mode) == 0o755
    (second.workspace / "out.txt").write_text("written by the next job")


def test_what_a_stray_process_wrote_after_the_job_is_gone_when_the_tree_serves_again(
    tmp_path: Path,
) -> None:
    slots = Slots(str(tmp_path))
    first = slots.acquire(None, bind=False, name="acme/widget")
    slots.release(first)
    (first.workspace / "late.txt").write_text("a stray process wrote this after the job")
    (first.temp / "late").mkdir()
    second = slots.acquire(None, bind=False, name="acme/widget")
    assert second.root == first.root
    assert holds_data(second) == [] and list(second.temp.iterdir()) == []


def test_a_checkout_copy_is_fresh_for_every_job(tmp_path: Path) -> None:
    source = tmp_path / "repo"
    source.mkdir()
    (source / "main.py").write_text("print('hi')\n")
    slots = Slots(str(tmp_path / "jobs"))
    first = slots.acquire(str(source), bind=False)
    (first.workspace / "main.py").write_text("changed by the job\n")
    (first.workspace / "new.txt").write_text("left by the job\n")
    slots.release(first)
    second = slots.acquire(str(source), bind=False)
    assert second.root == first.root
    assert sorted(p.name for p in second.workspace.iterdir()) == ["main.py"]
    assert (second.workspace / "main.py").read_text() == "print('hi')\n"


def test_a_bound_workspace_is_never_emptied(tmp_path: Path) -> None:
    source = tmp_path / "repo"
    source.mkdir()
    (source / "keep.txt").write_text("the user's file\n")
    slots = Slots(str(tmp_path / "jobs"))
    dirs = slots.acquire(str(source), bind=True)
    assert dirs.workspace == source
    slots.release(dirs)
    assert (source / "keep.txt").read_text() == "the user's file\n"


def test_a_temp_that_became_a_symlink_is_removed_without_following_it(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("not the runner's to delete")
    slots = Slots(str(tmp_path / "jobs"))
    dirs = slots.acquire(None, bind=False)
    os.rmdir(dirs.temp)
    dirs.temp.symlink_to(outside)
    slots.release(dirs)
    assert (outside / "precious.txt").read_text() == "not the runner's to delete"
    again = slots.acquire(None, bind=False)
    assert again.temp.is_dir() and not again.temp.is_symlink()
    assert list(again.temp.iterdir()) == []


def test_a_link_planted_for_the_next_repository_is_not_its_workspace(tmp_path: Path) -> None:
    spy = tmp_path / "spy"
    spy.mkdir()
    slots = Slots(str(tmp_path / "jobs"))
    first = slots.acquire(None, bind=False, name="acme/tool")
    (first.workspace.parent / "victim").symlink_to(spy)
    slots.release(first)
    second = slots.acquire(None, bind=False, name="corp/victim")
    assert second.root == first.root
    assert second.workspace.is_dir() and not second.workspace.is_symlink()
    (second.workspace / "secret.txt").write_text("corp's code")
    assert list(spy.iterdir()) == []


def test_a_hard_link_to_an_env_file_does_not_catch_the_next_jobs_values(tmp_path: Path) -> None:
    slots = Slots(str(tmp_path / "jobs"))
    first = slots.acquire(None, bind=False)
    env = step_files(first)["GITHUB_ENV"]
    script = write_script(str(first.files), "true\n", resolve_shell("bash"))
    os.link(env, tmp_path / "spy-env")
    os.link(script, tmp_path / "spy-script")
    slots.release(first)
    second = slots.acquire(None, bind=False)
    assert second.root == first.root
    Path(step_files(second)["GITHUB_ENV"]).write_text("TOKEN=topsecret\n")
    write_script(str(second.files), "echo $SECRET\n", resolve_shell("bash"))
    assert "topsecret" not in (tmp_path / "spy-env").read_text()
    assert "SECRET" not in (tmp_path / "spy-script").read_text()  # it keeps the first job's own


def test_what_a_job_left_beside_its_directories_is_removed_and_modes_restored(
    tmp_path: Path,
) -> None:
    slots = Slots(str(tmp_path / "jobs"))
    dirs = slots.acquire(None, bind=False)
    (dirs.temp.parent / "leak.txt").write_text("from $RUNNER_TEMP/..")
    os.chmod(dirs.temp, 0o777)
    slots.release(dirs)
    again = slots.acquire(None, bind=False)
    assert sorted(p.name for p in again.root.iterdir()) == [
        "files",
        "temp",
        "tool-cache",
        "workspace",
    ]
    assert stat.S_IMODE(again.temp.stat().st_mode) == 0o700


def test_a_tree_waits_before_it_serves_again(tmp_path: Path) -> None:
    slots = Slots(str(tmp_path / "jobs"), reuse_after=0.3)
    first = slots.acquire(None, bind=False)
    slots.release(first)
    assert slots.acquire(None, bind=False).root != first.root  # too soon: a new tree
    time.sleep(0.35)
    assert slots.acquire(None, bind=False).root == first.root


def test_a_tree_serves_again_at_once_when_its_jobs_processes_are_gone(tmp_path: Path) -> None:
    slots = Slots(str(tmp_path / "jobs"), reuse_after=60)
    first, second = slots.acquire(None, bind=False), slots.acquire(None, bind=False)
    slots.release(first, "m1")
    slots.release(second, "m2")
    slots.gone(["m2", "unknown"])
    assert slots.acquire(None, bind=False).root == second.root  # not the older first
    assert slots.acquire(None, bind=False).root not in (first.root, second.root)
    slots.gone(["m1"])
    assert slots.acquire(None, bind=False).root == first.root


def test_a_tree_whose_jobs_processes_may_live_waits_for_the_time_limit(tmp_path: Path) -> None:
    slots = Slots(str(tmp_path / "jobs"), reuse_after=0.3)
    first = slots.acquire(None, bind=False)
    slots.release(first, "m1")
    slots.gone(["m2"])  # another job's
    assert slots.acquire(None, bind=False).root != first.root
    time.sleep(0.35)
    again = slots.acquire(None, bind=False)
    assert again.root == first.root
    slots.release(again, "m3")
    slots.gone(["m1"])  # late: it says nothing of the tree's new job
    assert slots.acquire(None, bind=False).root != first.root


def test_links_and_odd_files_among_the_env_files_are_removed_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "target.txt"
    target.write_text("outside data")
    slots = Slots(str(tmp_path / "jobs"))
    dirs = slots.acquire(None, bind=False)
    files = step_files(dirs)
    os.remove(files["GITHUB_ENV"])
    os.symlink(target, files["GITHUB_ENV"])
    os.mkfifo(dirs.files / "pipe")
    (dirs.files / "nested").mkdir()
    slots.release(dirs)
    again = slots.acquire(None, bind=False)
    assert again.root == dirs.root
    assert target.read_text() == "outside data"
    assert all(p.is_file() and not p.is_symlink() for p in again.files.iterdir())


def test_close_removes_the_kept_trees(tmp_path: Path) -> None:
    slots = Slots(str(tmp_path))
    for dirs in [slots.acquire(None, bind=False) for _ in range(3)]:
        slots.release(dirs)
    slots.close()
    assert os.listdir(tmp_path) == []


def test_rewrite_replaces_contents_and_mode_and_never_follows_a_link(tmp_path: Path) -> None:
    path = tmp_path / "step.sh"
    rewrite(str(path), b"a long first script\n" * 10, 0o700)
    os.chmod(path, 0o777)
    rewrite(str(path), b"short\n", 0o700)
    assert path.read_bytes() == b"short\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    rewrite(str(path), b"")
    assert path.read_bytes() == b"" and stat.S_IMODE(path.stat().st_mode) == 0o600

    target = tmp_path / "elsewhere"
    target.write_text("keep")
    link = tmp_path / "event.json"
    link.symlink_to(target)
    with pytest.raises(OSError):
        rewrite(str(link), b"{}")
    assert target.read_text() == "keep"


def test_each_step_gets_empty_env_files_whatever_the_last_step_made_of_them(
    tmp_path: Path,
) -> None:
    target = tmp_path / "target.txt"
    target.write_text("the runner user's file")
    dirs = Slots(str(tmp_path / "jobs")).acquire(None, bind=False)
    files = step_files(dirs)
    Path(files["GITHUB_OUTPUT"]).write_text("name=value\n")
    os.chmod(files["GITHUB_PATH"], 0o644)
    os.remove(files["GITHUB_ENV"])
    os.symlink(target, files["GITHUB_ENV"])
    os.remove(files["GITHUB_STATE"])
    os.mkfifo(files["GITHUB_STATE"])
    os.remove(files["GITHUB_STEP_SUMMARY"])  # a step may remove one, too
    again = step_files(dirs)
    assert again == files
    for path in again.values():
        info = os.lstat(path)
        assert stat.S_ISREG(info.st_mode) and info.st_size == 0
        assert stat.S_IMODE(info.st_mode) == 0o600
    assert target.read_text() == "the runner user's file"


def test_a_released_tree_keeps_no_data_of_its_job(tmp_path: Path) -> None:
    slots = Slots(str(tmp_path), reuse_after=60)
    dirs = slots.acquire(None, bind=False, name="acme/widget")
    use(dirs)
    os.rmdir(dirs.tool_cache / "node")
    shutil.rmtree(dirs.temp)  # a job may remove a directory of its tree, too
    slots.release(dirs)
    assert [p for p in dirs.root.rglob("*") if p.is_file() and p.stat().st_size] == []
    assert list(dirs.workspace.iterdir()) == []
    again = slots.acquire(None, bind=False, name="acme/widget")  # too soon: another tree
    assert again.root != dirs.root
