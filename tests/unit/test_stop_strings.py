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


def test_filter_never_shows_a_stop_string_and_keeps_token_counts():
    from webui.loaders.base import StopStringFilter

    f = StopStringFilter(["\nUser:"])
    shown = [f.feed(p) for p in ["Hello", " there", "\n", "Us", "er:", " ignored"]]
    texts = [c.text for c in shown if c]
    assert "".join(texts) == "Hello there"
    assert f.stopped
    last = f.finish("stop", prompt_tokens=3)
    assert last.text == "" and last.finish_reason == "stop" and last.prompt_tokens == 3
    assert sum(c.n_tokens for c in shown if c) + last.n_tokens == 5  # " ignored" was never fed


def test_filter_releases_held_text_when_it_was_not_a_stop():
    from webui.loaders.base import StopStringFilter

    f = StopStringFilter(["\n\n"])
    assert f.feed("a\n").text == "a"
    assert f.feed("b").text == "\nb"
    last = f.finish("length", prompt_tokens=1, tail="!")
    assert last.text == "!" and last.finish_reason == "length"
