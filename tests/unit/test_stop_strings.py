from webui.loaders.base import find_stop, held_back


def test_find_stop_returns_earliest():
    assert find_stop("abc STOP def END", ["END", "STOP"]) == 4
    assert find_stop("abc", ["x"]) == -1
    assert find_stop("abc", []) == -1
    assert find_stop("abc", [""]) == -1


def test_held_back_keeps_possible_stop_prefixes():
    assert held_back("hello wor", ["world!"]) == 3
    assert held_back("hello", ["xyz"]) == 0
    assert held_back("a\n", ["\n\n"]) == 1
    assert held_back("abc", ["c", "bcd"]) == 2
