from model.cpu import cpu_info


def test_cpu_info_reads_a_fields_value_and_nothing_where_there_is_none(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx512_bf16\nvmx flags\t: ept\n"
                    "processor\t: 1\nflags\t\t: other\n")
    assert cpu_info("model name", info) == "AMD EPYC"
    assert cpu_info("flags", info) == "fpu avx512_bf16"  # the first CPU's, not "vmx flags"
    assert cpu_info("bogomips", info) == ""
    assert cpu_info("flags", tmp_path / "missing") == ""
