"""Per-row packed batches: attention linear in the batch on CPU, documents that never attend to each other.

Why: TRL's `packing=True` (bfd) turns on padding-free batches, which flatten the whole batch into one row with
`position_ids`. On CPU with sdpa the block-diagonal mask is then built over all tokens of the batch, so attention
costs (batch·max_length)² and a 32 × 512 batch took 5.7 GB (../shared/NOTES.md). Here each packed row stays a row:
input_ids, labels and position_ids are [batch, max_length], with position_ids restarting at 0 at every document and
no attention_mask. transformers (5.19, masking_utils) then finds the documents of each row from the position_ids
(`find_packed_sequence_indices`) and builds a causal block-diagonal mask per row: cost batch·max_length².

posttrain.trainer does this for `training.batching: per_row` (docs/training.md, "Batching"). By hand, with TRL's
SFTTrainer (TRL 1.16 refuses a custom collator when packing/padding-free is on, so the dataset is packed here first
and TRL's own preparation is skipped):

    dataset = pack_rows(tokenized, max_length, "bfd")              # input_ids, labels, seq_lengths per packed row
    config = SFTConfig(..., max_length=max_length, **PER_ROW_SFT_CONFIG)
    trainer = SFTTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer,
                         data_collator=PerRowPackedCollator(tokenizer.pad_token_id, max_length))

Tests: tests/test_collate.py (packed per-row logits equal per-document logits). Speed: benchmarks/mini_throughput.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

IGNORE_INDEX = -100
# Batch key holding the number of real (non-padding) tokens, when PerRowPackedCollator(count_tokens=True). Counted
# here because the batch cannot tell padding apart afterwards: the pad token may also be the documents' eos.
# posttrain.trainer.Trainer takes it out before the model sees the batch.
REAL_TOKENS = "num_real_tokens"
# SFTConfig fields for per-row packing: no TRL packing or padding-free (they force the flattened batch), and no TRL
# dataset preparation (the dataset arrives tokenized, labelled and packed by pack_rows).
PER_ROW_SFT_CONFIG = {"packing": False, "padding_free": False, "dataset_kwargs": {"skip_prepare_dataset": True}}


def pack_rows(dataset, max_length: int, strategy: str = "bfd"):
    """Pack a tokenized dataset (input_ids, labels) into rows of at most max_length tokens with TRL's packer.

    strategy: "bfd" (SFT: an over-long example is truncated; drop those before, as posttrain.data.tokenize_sft does)
    or "bfd_split" (pre-training: long documents continue in other rows). Rows keep `seq_lengths`, the lengths of the
    documents in them, which PerRowPackedCollator turns into position_ids."""
    from trl import pack_dataset

    if strategy not in ("bfd", "bfd_split"):
        raise ValueError(f"strategy must be 'bfd' or 'bfd_split' (document boundaries kept), got {strategy!r}")
    columns = dataset.column_names  # None for some streamed datasets: then TRL's packer names what is missing
    missing = {"input_ids", "labels"} - set(columns) if columns is not None else set()
    if missing:
        raise ValueError(f"pack_rows needs tokenized columns input_ids and labels; missing {sorted(missing)}")
    return pack_dataset(dataset.select_columns(["input_ids", "labels"]), max_length, strategy)


def row_position_ids(seq_lengths: list[int], row_length: int) -> list[int]:
    """0, 1, ... restarting at every document; the padding after the last document counts as one more document."""
    positions = [p for n in seq_lengths for p in range(n)]
    return positions + list(range(row_length - len(positions)))


@dataclass
class PerRowPackedCollator:
    """Packed rows → {"input_ids", "labels", "position_ids"} of shape [batch, length], no attention_mask.

    length = the longest row of the batch, or `pad_to` when given (fixed shapes: steady step times). Labels are -100
    on padding and on each document's first token (it would otherwise be predicted from the previous document's last
    token, which a document trained alone never does). count_tokens: also return REAL_TOKENS, the batch's tokens
    without the padding (a 0-dim tensor)."""
    pad_token_id: int
    pad_to: int | None = None
    count_tokens: bool = False

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        rows = [list(e["input_ids"]) for e in examples]
        length = max(map(len, rows)) if self.pad_to is None else self.pad_to
        if any(len(r) > length for r in rows):
            raise ValueError(f"a packed row has {max(map(len, rows))} tokens, more than pad_to={length}")
        input_ids, labels, positions = [], [], []
        for example, ids in zip(examples, rows):
            seq_lengths = list(example.get("seq_lengths") or [len(ids)])
            if sum(seq_lengths) != len(ids):
                raise ValueError(f"seq_lengths {seq_lengths} sum to {sum(seq_lengths)}, the row has {len(ids)} tokens")
            pad = length - len(ids)
            pos = row_position_ids(seq_lengths, length)
            lab = list(example.get("labels", ids)) + [IGNORE_INDEX] * pad
            input_ids.append(ids + [self.pad_token_id] * pad)
            labels.append([IGNORE_INDEX if p == 0 else t for t, p in zip(lab, pos)])
            positions.append(pos)
        batch = {"input_ids": torch.tensor(input_ids), "labels": torch.tensor(labels),
                 "position_ids": torch.tensor(positions)}
        if self.count_tokens:
            batch[REAL_TOKENS] = torch.tensor(sum(map(len, rows)))
        return batch
