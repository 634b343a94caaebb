from tally_cli import main


def test_prints_the_report(tmp_path, capsys):
    path = tmp_path / "text.txt"
    path.write_text("to be or not to be")
    assert main([str(path)]) == 0
    assert capsys.readouterr().out == "be: 2\nto: 2\nnot: 1\n"


def test_usage_without_a_file(capsys):
    assert main([]) == 2
    assert "usage" in capsys.readouterr().err
