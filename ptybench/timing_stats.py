"""Is HEAD faster or slower than BASE? Two samples of timings compared the way asv and pyperf do: a minimum effect
that matters and a significance test, never one ratio of two numbers.

The samples are many short timings (one per iteration, pooled over the fresh processes of each side, which ran
interleaved). Whole processes that ran slow are left out first: on a shared virtual machine about a quarter of the
processes run 1.3–2× slower than the rest with nothing visible in the guest's load (measured on the 2-core box,
docs/guide.md, "The regression gate"), so each side keeps the processes whose median is within
``PROCESS_FACTOR`` of its fastest process. A code change that slows every process still shows; one that slows only
some processes (a nondeterministic slow path) is hidden by this, and the row says how many processes were left.

A change is *slower*/*faster* when the Mann–Whitney U test (scipy.stats.mannwhitneyu, two-sided, the test asv
uses) gives p < ``alpha`` **and** the ratio of medians is beyond the minimum effect **and** the ratio's interval
excludes 1. The interval is a percentile bootstrap on two levels, processes and then iterations in them, since
iterations of one process share its state (scipy.stats.bootstrap resamples one level, which would treat 100
iterations of 5 processes as 100 independent samples). *Same* when that interval lies inside the band
±``min_effect``, or when the change is significant but smaller than the minimum effect; *uncertain* otherwise
(too few or too noisy samples to tell).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ptybench.engines.errors import InputError

#: asv's significance level for its Mann–Whitney test.
DEFAULT_ALPHA = 0.002
#: The smallest change reported as faster/slower: 5 %.
DEFAULT_MIN_EFFECT = 0.05
#: A process whose median iteration is more than this factor above its side's fastest process ran slow.
PROCESS_FACTOR = 1.10
#: Confidence of the ratio's interval.
CONFIDENCE = 0.99
VERDICTS = ("faster", "slower", "same", "uncertain")


@dataclass(frozen=True)
class Comparison:
    """HEAD against BASE: ratio of medians (HEAD / BASE, > 1 is slower), its interval, the test's p-value."""

    ratio: float
    low: float
    high: float
    p_value: float
    verdict: str
    base_samples: int
    head_samples: int
    #: Processes left out as slow (see PROCESS_FACTOR), per side.
    base_slow_processes: int = 0
    head_slow_processes: int = 0


def _pooled(groups: Sequence[Sequence[float]], name: str) -> list[np.ndarray]:
    arrays = [np.asarray(group, dtype=float) for group in groups if len(group)]
    if not arrays:
        raise InputError(f"{name}: expected at least one timing, got none")
    for array in arrays:
        if not np.all(np.isfinite(array)) or np.any(array <= 0):
            raise InputError(f"{name}: expected positive finite timings, got {array[~(array > 0)][:3].tolist()}")
    return arrays


def family_levels(alpha: float, family: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """(alpha, confidence) for each of ``family`` comparisons judged together (Bonferroni), so that the chance of
    any false call among them stays within the single comparison's: a gate that judges 14 benchmarks at
    p < 0.002 and 99 % intervals otherwise calls identical code slower or faster several times as often."""
    family = max(1, int(family))
    return alpha / family, 1.0 - (1.0 - confidence) / family


def fastest_processes(groups: list[np.ndarray], factor: float = PROCESS_FACTOR) -> list[np.ndarray]:
    """The processes whose median is within ``factor`` of the side's fastest process median."""
    medians = [float(np.median(group)) for group in groups]
    fastest = min(medians)
    return [group for group, median in zip(groups, medians, strict=True) if median <= factor * fastest]


def _resampled_medians(groups: list[np.ndarray], resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Medians of ``resamples`` two-level resamples: processes drawn with replacement, then as many iterations as
    each drawn process has, drawn from it with replacement. Vectorised over resamples (in chunks), since a
    family-wise interval needs tens of thousands of them."""
    lengths = np.array([len(group) for group in groups])
    width = int(lengths.max())
    padded = np.full((len(groups), width), np.nan)
    for index, group in enumerate(groups):
        padded[index, :len(group)] = group
    medians = np.empty(resamples)
    chunk = max(1, 2_000_000 // (len(groups) * width))
    for start in range(0, resamples, chunk):
        count = min(chunk, resamples - start)
        picks = rng.integers(0, len(groups), size=(count, len(groups)))
        picked_lengths = lengths[picks][..., None]
        draws = (rng.random((count, len(groups), width)) * picked_lengths).astype(np.intp)
        values = padded[picks[..., None], draws]
        values[np.arange(width)[None, None, :] >= picked_lengths] = np.nan
        medians[start:start + count] = np.nanmedian(values.reshape(count, -1), axis=1)
    return medians


def ratio_interval(base: list[np.ndarray], head: list[np.ndarray], confidence: float = CONFIDENCE,
                   resamples: int | None = None, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of median(HEAD)/median(BASE), resampling processes and then the iterations inside each
    (a two-level bootstrap; one process that ran slow moves its side as a whole, as it does in reality). By
    default enough resamples that each tail holds at least 20 (2000 at the least)."""
    tail = (1.0 - confidence) / 2.0
    resamples = resamples or max(2000, int(np.ceil(20 / tail)))
    rng = np.random.default_rng(seed)
    ratios = _resampled_medians(head, resamples, rng) / _resampled_medians(base, resamples, rng)
    low, high = np.quantile(ratios, [tail, 1.0 - tail])
    return float(low), float(high)


def compare_samples(base: Sequence[Sequence[float]], head: Sequence[Sequence[float]],
                    min_effect: float = DEFAULT_MIN_EFFECT, alpha: float = DEFAULT_ALPHA, seed: int = 0,
                    confidence: float = CONFIDENCE) -> Comparison:
    """BASE and HEAD timings, each a list of processes' per-iteration seconds (a flat list counts as one process).
    ``alpha`` and ``confidence`` are this comparison's own levels (a gate judging several benchmarks at once
    passes levels corrected for their number: ``family_levels``)."""
    if not 0 < alpha < 1:
        raise InputError(f"alpha: expected a probability in (0, 1), got {alpha!r}")
    if not 0 <= min_effect < 1:
        raise InputError(f"min_effect: expected a fraction in [0, 1), got {min_effect!r}")
    if base and np.isscalar(base[0]):
        base = [base]  # type: ignore[list-item]
    if head and np.isscalar(head[0]):
        head = [head]  # type: ignore[list-item]
    base_all, head_all = _pooled(base, "BASE timings"), _pooled(head, "HEAD timings")
    base_groups, head_groups = fastest_processes(base_all), fastest_processes(head_all)
    a, b = np.concatenate(base_groups), np.concatenate(head_groups)
    ratio = float(np.median(b) / np.median(a))
    from scipy import stats  # here, not at import: scipy.stats costs every command's start-up 0.4 s

    p_value = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue) if len(a) > 1 and len(b) > 1 else 1.0
    low, high = ratio_interval(base_groups, head_groups, confidence=confidence, seed=seed)
    band_low, band_high = 1.0 / (1.0 + min_effect), 1.0 + min_effect
    significant = p_value < alpha
    if significant and ratio > band_high and low > 1.0:
        verdict = "slower"
    elif significant and ratio < band_low and high < 1.0:
        verdict = "faster"
    elif (band_low <= low and high <= band_high) or (significant and band_low <= ratio <= band_high):
        verdict = "same"
    else:
        verdict = "uncertain"
    return Comparison(ratio, low, high, p_value, verdict, len(a), len(b), len(base_all) - len(base_groups),
                      len(head_all) - len(head_groups))
