import pytest
from pydantic import ValidationError

from webui.params import SAMPLING_FIELDS, SamplingParams


def test_text_generation_webui_keys_are_accepted():
    p = SamplingParams.model_validate({"max_new_tokens": 77, "repetition_penalty": 1.2, "do_sample": False})
    assert p.max_tokens == 77
    assert p.repeat_penalty == 1.2
    assert p.greedy


def test_out_of_range_values_are_rejected_with_the_field_name():
    with pytest.raises(ValidationError, match="temperature"):
        SamplingParams(temperature=-1)
    with pytest.raises(ValidationError, match="top_p"):
        SamplingParams(top_p=1.5)
    with pytest.raises(ValidationError, match="bogus"):
        SamplingParams.model_validate({"bogus": 1})


def test_every_field_has_a_description():
    for name in SAMPLING_FIELDS:
        assert SamplingParams.model_fields[name].description, name


def test_stop_accepts_a_single_string_and_non_default_lists_changes():
    assert SamplingParams(stop="\n\n").stop == ["\n\n"]
    assert SamplingParams(temperature=0.3).non_default() == {"temperature": 0.3}
    assert SamplingParams(temperature=0).greedy
