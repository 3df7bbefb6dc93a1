"""The P4 programs are the source of truth: committed artifacts must match them."""

import pytest

from p4cs import constants, p4gen, params, paths


@pytest.mark.parametrize("target", ["dpdk", "bmv2"])
def test_committed_artifacts_are_current(target):
    # Fails when p4src/ or the parameters changed without `p4cs generate --compile`.
    assert p4gen.check(target) is None


def test_params_render_and_validate():
    p = params.defaults("dpdk")
    text = p.to_p4()
    assert f"#define P4CS_FLOW_TABLE_SIZE {p.flow_table_size}" in text
    assert "#define P4CS_CPU_PORT 0" in text
    assert params.defaults("bmv2").cpu_port == 255
    q = params.with_overrides(p, {"flow_table_size": 1024, "flow_timeouts_s": [5, 60]})
    assert q.flow_table_size == 1024 and q.flow_timeouts_s == (5, 60)
    with pytest.raises(ValueError, match="unknown data-plane parameter"):
        params.with_overrides(p, {"flow_tabel_size": 1})
    with pytest.raises(ValueError, match="positive"):
        params.with_overrides(p, {"max_ports": 0})
    with pytest.raises(ValueError, match="below max_ports"):
        params.with_overrides(p, {"cpu_port": 20})
    with pytest.raises(ValueError, match="unknown target"):
        params.defaults("tofino")


def test_generate_renders_params(tmp_path):
    out = p4gen.generate("dpdk", {"flow_table_size": 4096}, out=tmp_path)
    assert "#define P4CS_FLOW_TABLE_SIZE 4096" in (out / "params.p4").read_text()


def test_spec_fixup_inserts_the_missing_parser_port_copy():
    spec = ("apply {\n\trx m.pna_main_input_metadata_input_port\n"
            "\tjmpeq L m.pna_main_parser_input_metadata_input_port 0x0\n}\n")
    fixed, notes = p4gen.fixup_spec(spec)
    lines = fixed.splitlines()
    assert lines[2] == "\tmov m.pna_main_parser_input_metadata_input_port m.pna_main_input_metadata_input_port"
    assert notes
    # idempotent: a spec that already writes the field is left alone
    again, notes2 = p4gen.fixup_spec(fixed)
    assert again == fixed and notes2 == []


def test_committed_spec_has_the_fixup():
    spec = paths.spec().read_text()
    assert "mov m.pna_main_parser_input_metadata_input_port m.pna_main_input_metadata_input_port" in spec


def test_both_targets_share_one_p4info():
    from google.protobuf import text_format
    from finsy.proto import p4i
    infos = []
    for t in ("dpdk", "bmv2"):
        info = p4i.P4Info()
        text_format.Parse(paths.p4info(t).read_text(), info)
        infos.append({(o.preamble.name, o.preamble.id) for o in (*info.tables, *info.actions, *info.counters)})
    assert infos[0] == infos[1]


def test_constants_render_into_params_and_the_check_covers_them(monkeypatch):
    text = params.defaults("bmv2").to_p4()
    assert "const bit<8> REASON_FLOW_END = 4;" in text
    assert "const bit<16> ETHERTYPE_IPV4 = 0x0800;" in text
    assert "const bit<8> TCP_FLAG_ACK = 0x10;" in text
    # every integer constant of the module is declared to the P4 program
    declared = {name for name, _, _ in constants.P4_CONSTANTS}
    assert declared == {n for n, v in vars(constants).items() if n.isupper() and isinstance(v, int)}
    # a constant changed on the host side makes the committed artifacts stale
    monkeypatch.setattr(constants, "REASON_FLOW_END", 9)
    assert "constants.py changed" in p4gen.check("dpdk")


def test_end_profile_is_the_p4_programs():
    """The DPDK server's END_PROFILE (its `learner reuse` line) is arch.p4's P4CS_END_PROFILE,
    the profile a FIN or RST moves a flow entry to."""
    import re

    from p4cs.switch.dpdk.expiry import END_PROFILE

    arch = (paths.p4src() / "include" / "arch.p4").read_text()
    assert re.findall(r"#define P4CS_END_PROFILE\s+(\d+)", arch) == [str(END_PROFILE)]
