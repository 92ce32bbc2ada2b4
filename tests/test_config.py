"""Config loading: every problem is reported with its key, before any model is touched."""

from __future__ import annotations

import textwrap

import pytest
import yaml

from rlaif.config import Config, ConfigError, load, reference_rows, save
from tests.conftest import REPO, run_cli


def write(tmp_path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_shipped_config_lists_every_key_with_the_dataclass_defaults():
    # One source of truth: config.yaml shows the defaults, the dataclasses define them.
    assert load(REPO / "config.yaml") == Config()
    # The YAML file lists every key, so a user can see and change each one.
    listed = yaml.safe_load((REPO / "config.yaml").read_text())
    assert {f"{s}.{k}" for s, keys in listed.items() for k in keys} == {
        key for key, _, _ in reference_rows()
    }


def test_overrides_are_applied_and_type_checked(tmp_path):
    path = write(tmp_path, "trainer:\n  max_steps: 5\n")
    config = load(path, ["trainer.max_steps=3", "student.temperature=1", "run.name=x"])
    assert config.trainer.max_steps == 3
    assert config.student.temperature == 1.0 and isinstance(config.student.temperature, float)
    assert config.run.name == "x"
    with pytest.raises(ConfigError, match=r"--set trainer.max_steps: trainer.max_steps='abc'"):
        load(path, ["trainer.max_steps=abc"])
    with pytest.raises(ConfigError, match="expected section.key=value"):
        load(path, ["max_steps=3"])


def test_every_problem_is_listed_at_once_with_file_line_and_key(tmp_path):
    path = write(
        tmp_path,
        """\
        trainer:
          max_stepz: 3
          learning_rate: fast
        student:
          temperature: -1
          device: tpu
        bogus: {}
        """,
    )
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert "5 problems" in message
    assert f"{path}:2: trainer.max_stepz: unknown key" in message
    assert f"{path}:3: trainer.learning_rate='fast': expected a number, got 'fast' (str)" in message
    assert f"{path}:5: student.temperature=-1: must be at least 0.01" in message
    assert f"{path}:6: student.device='tpu': expected one of auto, cpu, cuda, mps" in message
    assert f"{path}:7: bogus: unknown section" in message


def test_cross_field_check_names_the_key_to_change(tmp_path):
    path = write(tmp_path, "trainer:\n  samples_per_prompt: 1\n")
    with pytest.raises(
        ConfigError, match=r":2: trainer.samples_per_prompt=1: whitening needs at least 2"
    ):
        load(path)
    path = write(tmp_path, "teacher:\n  provider: openai-compatible\n")
    with pytest.raises(ConfigError, match="teacher.base_url=None: the openai-compatible provider"):
        load(path)


def test_bools_are_not_numbers_and_numbers_are_not_strings(tmp_path):
    path = write(tmp_path, "trainer:\n  max_steps: true\nstudent:\n  model: 3\n")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert "trainer.max_steps=True: expected an integer" in str(info.value)
    assert "student.model=3: expected a string" in str(info.value)


def test_exponent_without_a_dot_is_a_number_as_users_mean_it(tmp_path):
    # YAML 1.1 (PyYAML) reads `1e-3` as the string "1e-3"; a float key takes it as 0.001.
    path = write(tmp_path, "trainer:\n  learning_rate: 1e-3\n")
    assert load(path, ["kl.coef=2E-2"]).trainer.learning_rate == 0.001
    assert load(path, ["kl.coef=2E-2"]).kl.coef == 0.02
    with pytest.raises(ConfigError, match="expected a number"):
        load(path, ["kl.coef=e-3"])


def test_saved_config_round_trips(tmp_path):
    config = load(None, ["trainer.max_steps=7", "teacher.provider=none"])
    save(config, tmp_path / "resolved.yaml")
    assert load(tmp_path / "resolved.yaml") == config
    assert config != Config()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("trainer:\n  bogus_key: 1\n", "trainer.bogus_key: unknown key"),
        (
            "trainer:\n  learning_rate: 'a lot'\n",
            "trainer.learning_rate='a lot': expected a number",
        ),
        ("trainer:\n  samples_per_prompt: 1\n", "trainer.samples_per_prompt=1: whitening needs"),
    ],
)
def test_cli_exits_non_zero_naming_the_key_without_loading_a_model(tmp_path, body, expected):
    # student.model points nowhere: had the CLI tried to load it, the error would be another one.
    path = write(tmp_path, body + "student:\n  model: /nonexistent/model\n")
    done = run_cli("--config", str(path), timeout=60)
    assert done.returncode == 2
    assert expected in done.stderr
    assert "student:" not in done.stdout and "/nonexistent/model" not in done.stderr


def test_docs_config_reference_is_current():
    # docs/configuration.md's table must be exactly what `config-doc` prints today: keys,
    # defaults, help.
    done = run_cli("config-doc", timeout=60)
    assert done.returncode == 0
    assert len(done.stdout.splitlines()) == len(reference_rows()) + 2  # header, rule, rows
    reference = (REPO / "docs" / "configuration.md").read_text()
    stale = [line for line in done.stdout.splitlines() if line not in reference]
    assert not stale, f"stale docs/configuration.md, run `make docs`: {stale}"


def test_config_doc_write_replaces_only_the_table_between_the_markers(tmp_path, capsys):
    from rlaif.cli.main import main

    page = tmp_path / "page.md"
    before, after = "# Title\n\nintro\n", "\n## Next\n\ntext\n"
    start, end = "<!-- config-doc:start (regenerate) -->", "<!-- config-doc:end -->"
    page.write_text(f"{before}{start}\n| stale | row |\n{end}{after}")
    assert main(["config-doc", "--write", str(page)]) == 0
    written = page.read_text()
    table = written.split(start + "\n")[1].split("\n" + end)[0].splitlines()
    assert written.startswith(before + start) and written.endswith(end + after)
    assert len(table) == len(reference_rows()) + 2 and "| stale | row |" not in table
    # --readme, the option's old name, still works (old Makefiles) and changes nothing now.
    assert main(["config-doc", "--readme", str(page)]) == 0
    assert page.read_text() == written
    # A file without its markers is refused, not appended to.
    page.write_text(before)
    assert main(["config-doc", "--write", str(page)]) == 2
    assert "needs one <!-- config-doc:start" in capsys.readouterr().err
    assert page.read_text() == before
