"""Start-up configuration checks (pure functions; the node's use of them is in test_ros_reliability)."""
from mde_ros.ros.paramcheck import (node_key_matches, params_file_problem, params_files, unknown_parameters,
                                    unmatched_params_files)


def test_params_files_are_found_inside_ros_args_only():
    argv = ["prog", "--params-file", "not_ros.yaml", "--ros-args", "-p", "a:=1", "--params-file", "one.yaml",
            "--", "--params-file", "x.yaml", "--ros-args", "--params-file", "two.yaml"]
    assert params_files(argv) == ["one.yaml", "two.yaml"]


def test_node_keys_follow_rcl_wildcards():
    fqn = "/robot/front/mde_depth"
    for key in ("/**", "/**/mde_depth", "/robot/*/mde_depth", "/robot/front/mde_depth", "/robot/**"):
        assert node_key_matches(key, fqn), key
    for key in ("mde_depth", "/*/mde_depth", "/other/**", "/**/depth_node", "/robot/front/mde_depth/x"):
        assert not node_key_matches(key, fqn), key
    assert node_key_matches("mde_depth", "/mde_depth") and node_key_matches("/**", "/mde_depth")


def test_unknown_parameters_get_the_closest_name():
    known = ["cloud.decimation", "scan.range_min", "model"]
    warnings = unknown_parameters(["cloud.decimaton", "model", "use_sim_time", "qos_overrides./x.depth",
                                   "zzz_unrelated"], known)
    assert warnings == ["unknown parameter 'cloud.decimaton' ignored: did you mean cloud.decimation?",
                        "unknown parameter 'zzz_unrelated' ignored (not a parameter of this node)"]


def test_params_file_problems_and_unmatched_files(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("/**/mde_depth:\n  ros__parameters:\n    model: ''\n")
    other = tmp_path / "other.yaml"
    other.write_text("depth_node:\n  ros__parameters:\n    model: ''\n")
    assert params_file_problem(good) is None and params_file_problem(other) is None
    assert "does not exist" in params_file_problem(tmp_path / "missing.yaml")
    assert "is not a file" in params_file_problem(tmp_path)
    (tmp_path / "bad.yaml").write_text("a: [\n")
    assert "not valid YAML" in params_file_problem(tmp_path / "bad.yaml")
    warnings = unmatched_params_files([good, other], "/mde_depth")
    assert len(warnings) == 1 and str(other) in warnings[0] and "depth_node" in warnings[0]
