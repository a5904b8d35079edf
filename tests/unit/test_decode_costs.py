"""DecodeCosts: how many draft tokens a step holds, from what decodes of each width cost."""

from webui.loaders.llama_slots import DecodeCosts


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
    for _ in range(DecodeCosts.SAMPLES):
        costs.observe(1, 0.010)
        costs.observe(4, 0.050)  # width 4 measured dear on this machine: 5 x one token
        costs.observe(6, 0.020)
    assert costs.cost(4) == 5.0
    assert costs.best_drafts(1, 3) == 0  # 4 tokens for 5 tokens' time: not worth it
    assert costs.best_drafts(1, 6) == 5
