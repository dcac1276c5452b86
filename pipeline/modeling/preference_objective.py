"""The DPO/ODPO objective on one run's pairs: the per-pair loss terms of a micro-batch
(one forward of the policy over its chosen and rejected responses, against reference
log-probs computed once beforehand) and the metrics a batch logs. The loop that
optimises it is ``pipeline.modeling.preference_training``."""

from __future__ import annotations

import numpy as np
import torch
from omegaconf import DictConfig

from pipeline.math.losses import LOSSES, PreferenceOutput
from pipeline.modeling import models
from pipeline.modeling import precision as precisions
from pipeline.modeling.fsdp import Group
from pipeline.modeling.one_process import OneProcess

METRIC_NAMES = (
    "train/loss",
    "train/rewards_chosen",
    "train/rewards_rejected",
    "train/margins",
    "train/accuracy",
    "train/offset",
    "train/grad_norm",
)


def batch_logps(
    policy: torch.nn.Module,
    samples: dict,
    prompt_ids: np.ndarray,
    chosen_ids: np.ndarray,
    rejected_ids: np.ndarray,
    pad_id: int,
) -> torch.Tensor:
    """One forward over chosen and rejected together: (2B,) log-probs, chosen first."""
    prompts = [samples["prompts"][i] for i in prompt_ids]
    chosen = [samples["responses"][i][j] for i, j in zip(prompt_ids, chosen_ids, strict=True)]
    rejected = [samples["responses"][i][j] for i, j in zip(prompt_ids, rejected_ids, strict=True)]
    return models.sequence_logps(policy, prompts + prompts, chosen + rejected, pad_id)


class PreferenceObjective:
    """``cfg.loss`` on ``pairs`` (indices into ``samples``' prompts and responses), with
    ``reference_logps`` (n_prompts, n_samples) and the pairs' ``offsets`` (or None) kept
    on the host: each micro-batch's rows are picked there and sent to ``device`` without
    a synchronisation (``models.to_device``)."""

    def __init__(
        self,
        cfg: DictConfig,
        samples: dict,
        pairs: dict,
        reference_logps: torch.Tensor,
        offsets: torch.Tensor | None,
        pad_id: int,
        device: torch.device,
    ) -> None:
        self.loss_fn, self.beta = LOSSES[cfg.loss.name], cfg.loss.beta
        self.precision = precisions.of(cfg)
        self.samples, self.pairs, self.pad_id = samples, pairs, pad_id
        self.reference_logps, self.offsets = reference_logps, offsets
        self.device = device

    def terms(self, policy: torch.nn.Module, pair_rows: np.ndarray) -> PreferenceOutput:
        """The loss and implicit rewards of the pairs ``pair_rows``, per pair."""
        prompt_ids = self.pairs["prompt"][pair_rows]
        chosen_ids = self.pairs["chosen"][pair_rows]
        rejected_ids = self.pairs["rejected"][pair_rows]
        with precisions.autocast(self.precision, self.device):
            logps = batch_logps(
                policy, self.samples, prompt_ids, chosen_ids, rejected_ids, self.pad_id
            )
        half = len(pair_rows)
        policy_chosen_logps, policy_rejected_logps = logps[:half], logps[half:]
        offset = self.offset(pair_rows)
        reference_chosen_logps = self.reference_logps[prompt_ids, chosen_ids]
        reference_rejected_logps = self.reference_logps[prompt_ids, rejected_ids]
        return self.loss_fn(
            policy_chosen_logps,
            policy_rejected_logps,
            models.to_device(reference_chosen_logps, self.device),
            models.to_device(reference_rejected_logps, self.device),
            beta=self.beta,
            offset=offset,
        )

    def offset(self, pair_rows: np.ndarray) -> torch.Tensor | None:
        """The pairs' offsets on the device; None for a loss without one."""
        if self.offsets is None:
            return None
        return models.to_device(self.offsets[pair_rows], self.device)

    def metrics(
        self,
        group: Group | OneProcess,
        batch_loss: torch.Tensor,
        grad_norm: torch.Tensor,
        outputs: list[PreferenceOutput],
        weights: torch.Tensor,
        pair_indices: np.ndarray,
    ) -> dict[str, float]:
        """A batch's logged row (``METRIC_NAMES``): its loss, the means over the whole
        batch of the implicit rewards, margins, accuracy and offset, and the grad norm.
        ``outputs`` are this rank's micro-batches, ``weights`` its pairs' weights."""
        chosen = torch.cat([terms.chosen_rewards for terms in outputs])
        rejected = torch.cat([terms.rejected_rewards for terms in outputs])
        margins = chosen - rejected
        offset = self.offset(pair_indices)  # every pair of the batch: the same on every rank
        per_pair = [chosen, rejected, margins, (margins > 0).float()]
        means = group.batch_means(per_pair, weights, len(pair_indices))
        offset_mean = offset.mean() if offset is not None else torch.zeros((), device=self.device)
        row = torch.stack([batch_loss, *means, offset_mean, grad_norm.float()])
        values = row.tolist()  # one transfer for the whole row
        return dict(zip(METRIC_NAMES, values, strict=True))
