import pytest

from parl_cli.common import comma_ints, comma_list


def test_comma_list_strips_and_drops_empty_items():
    assert comma_list(" oracle, pebble,,a-parl ") == ["oracle", "pebble", "a-parl"]
    assert comma_list(None) is None and comma_list("") is None and comma_list(" , ") is None


def test_comma_ints_parses_or_names_the_flag():
    assert comma_ints("3, 0,4", "--seeds") == [3, 0, 4]
    assert comma_ints(None, "--seeds") is None
    with pytest.raises(ValueError, match=r"--seeds must be comma-separated integers, got '1,two'"):
        comma_ints("1,two", "--seeds")
