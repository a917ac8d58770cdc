"""What the demo's model is and is not, said where its numbers and its checkpoints go.

The demo trains :class:`~IMDLBenCo.demo.model.DemoNet` for seconds on 64-pixel synthetic crops.
On real photographs it calls nearly every image manipulated (``pred_label`` about 1.0 with 30-97 %
of the pixels marked, in our runs on the MISC samples), and its robustness grid falls from the
clean score at the mildest attacks. Both are expected of such a model and say nothing about the
pipeline, so the demo says so: in its summary, its report, ``demo_summary.json`` and in every
checkpoint it trains (key ``"note"``), from which ``benco predict`` can repeat it
(:func:`checkpoint_note`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["NOTE_KEY", "demo_model_note", "ROBUSTNESS_NOTE", "add_note_to_checkpoints", "checkpoint_note"]

#: key of the note in a checkpoint dict (a plain string: ``torch.load(weights_only=True)`` reads it)
NOTE_KEY = "note"


def demo_model_note(epochs: int, images: int, size: int, seconds: float | None = None) -> str:
    """One sentence for the demo's checkpoints, summary and report."""
    took = f" in about {seconds:.0f} s" if seconds else ""
    return (f"demo model: DemoNet trained{took} for {epochs} epochs on {images} synthetic {size}x{size}-pixel crops "
            f"(copy-move, splicing and inpainting of a few photographs) to show the pipeline working; it is not a "
            f"detector for real photos, on which it calls nearly everything manipulated (use a zoo model with "
            f"its published weights for real images)")


#: why the demo's robustness grid drops at the mildest attacks (measured, see the module docstring)
ROBUSTNESS_NOTE = (
    "why the mildest attacks already cost most of the demo model's pixel F1: it trains for a minute (seconds with "
    "--quick) on 64-pixel crops with flips and 90-degree turns only, so it relies on fine noise traces that any blur, noise or "
    "re-encoding wipes out; and the JPEG attack, as IMDL-BenCo's, encodes the RGB image as if it were BGR with "
    "4:2:0 chroma subsampling at quality 99 or 100, so even 'JPEG 100' changes every pixel "
    "(JpegCompressionWrapper(exact_quality=True, correct_colors=True) is the clean round trip). Training the demo "
    "with IMDL-BenCo's default augmentations instead (blur, JPEG, rescaling) was measured (full demo, seed 42): "
    "after the same 20 epochs the clean pixel F1 fell from 0.81 to 0.21 (the untrained model's is 0.12; image AUC "
    "0.97 to 0.56) and stayed at 0.19 under every attack: a model trained for a minute cannot learn through them.")


def add_note_to_checkpoints(folder: str | os.PathLike, note: str) -> int:
    """Write ``note`` into every ``checkpoint-<epoch>.pth`` of a training run folder (atomically),
    keeping ``checkpoint-best.pth`` a hard link to its epoch's file; returns how many were written.
    ``checkpoint-resume.pth`` (the full training state) is left as it is."""
    import torch

    from ..engine.fileio import atomic_write

    folder = Path(folder)
    best = folder / "checkpoint-best.pth"
    numbered = sorted(p for p in folder.glob("checkpoint-*.pth") if p.stem.split("-", 1)[1].isdigit())
    linked = next((p for p in numbered if best.is_file() and os.path.samefile(p, best)), None)
    for path in numbered + ([] if linked is not None or not best.is_file() else [best]):
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            continue
        state[NOTE_KEY] = note
        atomic_write(path, lambda tmp, s=state: torch.save(s, tmp))
    if linked is not None:  # the epoch's file was replaced: link the best to the new one
        tmp = best.with_name(best.name + ".link")
        if tmp.exists():
            tmp.unlink()
        os.link(linked, tmp)
        os.replace(tmp, best)
    return len(numbered)


def checkpoint_note(checkpoint: Any) -> str | None:
    """The note a checkpoint carries (a path, or the dict already read), or None."""
    if not isinstance(checkpoint, dict):
        import torch

        try:
            checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
        except (OSError, RuntimeError, ValueError):
            return None
    note = checkpoint.get(NOTE_KEY) if isinstance(checkpoint, dict) else None
    return note if isinstance(note, str) and note.strip() else None
