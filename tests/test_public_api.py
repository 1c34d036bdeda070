"""The public surface is pinned: growing it is a deliberate change to this file."""

from __future__ import annotations

import promptopt
import promptopt.backends
import promptopt.strategies
import promptopt.testing


def test_top_level_exports() -> None:
    assert sorted(promptopt.__all__) == [
        "BackendError", "Budget", "BudgetExhausted", "CapabilityError", "ConfigError", "DataError", "Demo",
        "Estimate", "Example", "Prompt", "PromptSelector", "PromptoptError", "Result", "RetryPolicy", "RunConfig",
        "Score", "UnknownNameError", "estimate", "evaluate", "load_selector", "optimize"]


def test_subpackage_exports() -> None:
    assert sorted(promptopt.strategies.__all__) == ["APE", "APO", "EvoPromptDE", "EvoPromptGA", "FewShot", "GEPA",
                                                    "GeneticCrossover", "GeneticMutation", "HarmonySearch",
                                                    "HillClimbing", "MetaSPO", "MultiObjective", "OPRO", "PMPO",
                                                    "PromptBreeder", "PromptQuine", "PromptSelection", "PromptWizard",
                                                    "RLPrompt", "SPRIG", "SimulatedAnnealing",
                                                    "Strategy", "StrategyInfo", "TAPruning", "TabuSearch",
                                                    "get_strategy", "list_strategies"]
    assert sorted(promptopt.backends.__all__) == ["BACKENDS", "Backend", "CachedBackend", "Capabilities",
                                                  "ResponseCache", "RetryPolicy", "RetryingBackend",
                                                  "backend_class", "list_backends", "make_backend",
                                                  "parse_model_string"]
    assert sorted(promptopt.testing.__all__) == ["FakeBackend", "FaultPlan", "free_port", "run_fault_server",
                                                 "run_llama_server", "smollm2_path"]


def test_every_export_exists() -> None:
    for module in (promptopt, promptopt.backends, promptopt.strategies, promptopt.testing):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"
