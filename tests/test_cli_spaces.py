import json

import pytest
from typer.testing import CliRunner

from nasforge.cli import app
from nasforge.foreign.ofa import arch_to_ofa
from nasforge.space import load_space

runner = CliRunner()


def _one_line_error(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_help_lists_commands():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "spaces" in result.output and "space" in result.output


def test_spaces_table_reports_counts():
    result = runner.invoke(app, ["spaces"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "mobilenetv3-ofa" in result.output and "resnet-ofa" in result.output
    assert "2.176e+19" in result.output


def test_space_sample_prints_json_lines_with_cost():
    result = runner.invoke(app, ["space", "sample", "--space", "mobilenetv3-ofa", "-n", "3", "--seed", "5"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 3
    space = load_space("mobilenetv3-ofa")
    for line in lines:
        row = json.loads(line)
        arch = space.parse_arch(row)
        assert row["macs"] == space.macs(arch) and row["params"] == space.params(arch)
    again = runner.invoke(app, ["space", "sample", "--space", "mobilenetv3-ofa", "-n", "3", "--seed", "5"])
    assert again.output == result.output


def test_space_show_accepts_ofa_dict_and_files(tmp_path):
    space = load_space("mobilenetv3-ofa")
    arch = space.smallest()
    ofa = json.dumps(arch_to_ofa(arch, space))
    result = runner.invoke(app, ["space", "show", "--space", "mobilenetv3-ofa", "--arch", ofa])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["depths"] == [2, 2, 2, 2, 2]
    listing = tmp_path / "archs.json"
    listing.write_text(json.dumps([{"arch": space.largest().to_dict()}, {"arch": arch.to_dict()}]))
    result = runner.invoke(app, ["space", "show", "--space", "mobilenetv3-ofa", "--arch", f"{listing}#1"])
    assert result.exit_code == 0, result.output
    assert space.parse_arch(json.loads(result.output)) == arch


@pytest.mark.parametrize(
    "args, message",
    [
        (["space", "sample", "--space", "nope"], "unknown search space 'nope'"),
        (["space", "show", "--space", "mobilenetv3-ofa", "--arch", "{bad json"], "not valid JSON"),
        (
            ["space", "show", "--space", "mobilenetv3-ofa", "--arch",
             json.dumps({"ks": [4] * 20, "e": [3] * 20, "d": [2] * 5, "r": 160})],
            "kernel_sizes[0] = 4",
        ),
        (["space", "show", "--space", "mobilenetv3-ofa", "--arch", "missing.json"], "neither a JSON object"),
        (["space", "sample", "--space", "mobilenetv3-ofa", "-n", "0"], "-n must be positive"),
    ],
)
def test_user_errors_exit_2_with_one_line(args, message):
    result = runner.invoke(app, args)
    assert message in _one_line_error(result)


def test_bad_yaml_exits_2(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("name: x\nfamily: mobilenetv3\nresolutions: [0]\n")
    result = runner.invoke(app, ["space", "sample", "--space", str(path)])
    assert "field 'resolutions'" in _one_line_error(result)


def test_pareto_index_out_of_range_exits_2(tmp_path):
    listing = tmp_path / "pareto.json"
    listing.write_text(json.dumps([{"arch": load_space("mobilenetv3-ofa").largest().to_dict()}]))
    result = runner.invoke(app, ["space", "show", "--space", "mobilenetv3-ofa", "--arch", f"{listing}#99"])
    assert "has 1 entries" in _one_line_error(result)
