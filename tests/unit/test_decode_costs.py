"""DecodeCosts: how many draft tokens a step holds, from what decodes of each width cost."""

from webui.loaders.llama_slots import DecodeCosts


def measure(costs: DecodeCosts, width: int, *seconds: float) -> None:
    for s in seconds:
        costs.observe(width, s)


def test_one_or_two_drafts_are_never_chosen_with_the_measured_prior():
    costs = DecodeCosts(7)
    # a single slot: 2 or 3 tokens cost about what 4 do, so 3 drafts (width 4) or 5 (width 6), never 1 or 2
    assert costs.best_drafts(1, 1) == 0
    assert costs.best_drafts(1, 2) == 0
    assert costs.best_drafts(1, 3) == 3
    assert costs.best_drafts(1, 6) == 5
    assert costs.best_drafts(7, 6) == 0  # no room left in the decode


def test_measured_costs_replace_the_prior():
    costs = DecodeCosts(7)
    measure(costs, 1, *[0.010] * 4)
    measure(costs, 4, *[0.050] * 4)  # width 4 measured dear on this machine: 5 x one token
    measure(costs, 6, *[0.020] * 4)
    assert costs.cost(4) == 5.0
    assert costs.best_drafts(1, 3) == 0  # 4 tokens for 5 tokens' time: not worth it
    assert costs.best_drafts(1, 6) == 5


def test_the_first_decode_of_a_width_and_a_lone_slow_one_do_not_count():
    costs = DecodeCosts(7)
    measure(costs, 1, 0.030, 0.010, 0.010, 0.010)
    # llama.cpp sizes its buffers on a width's first decode (gemma-3: 113 ms, then 34-43 ms)
    measure(costs, 4, 0.113, 0.030, 0.030)
    assert costs.cost(4) == 2.9  # two measures are not enough yet: the prior
    measure(costs, 4, 0.030)
    assert abs(costs.cost(4) - 3.0) < 1e-9
    measure(costs, 4, 0.200)  # another process took the CPU for a moment: the median stays
    assert abs(costs.cost(4) - 3.0) < 1e-9


def test_a_width_measured_dear_is_tried_again_later():
    costs = DecodeCosts(7)
    measure(costs, 1, *[0.010] * 4)
    measure(costs, 4, *[0.080] * 4)  # measured while the machine was busy
    assert costs.best_drafts(1, 3) == 0
    measure(costs, 1, *[0.010] * (DecodeCosts.STALE + 1))  # it is not chosen, so not measured again...
    assert costs.best_drafts(1, 3) == 3  # ...and after a while its measures are forgotten
    measure(costs, 4, *[0.025] * 3)
    assert abs(costs.cost(4) - 2.5) < 1e-9


def test_unmeasured_widths_follow_how_the_measured_ones_compare_with_their_priors():
    costs = DecodeCosts(7)
    measure(costs, 1, *[0.020] * 4)
    # a CPU where wide decodes are cheap (AVX-512, gemma-3: width 4 at 1.8 x one token against the prior's 2.9)
    measure(costs, 4, *[0.036] * 4)
    scale = 1.8 / 2.9
    assert abs(costs.cost(6) - 3.6 * scale) < 1e-9
    assert costs.best_drafts(1, 6) == 5  # so width 6 is tried (unscaled, 6 / 3.6 lost to 4 / 1.8)...
    measure(costs, 6, *[0.070] * 4)  # ...and, measured dear there, it is left again
    assert costs.best_drafts(1, 6) == 3
