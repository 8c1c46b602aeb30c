"""Checkpoints as safetensors + JSON (never pickle).

A checkpoint ``NAME`` is ``NAME.safetensors`` (weights; shared tensors stored once) with an
optional ``NAME.json`` sidecar. Training state adds ``NAME.optim.safetensors`` holding the
optimiser's tensors and RNG states, the optimiser's param groups going in the JSON sidecar.
Every file is written to a temporary name and renamed, so a crash never leaves half a file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, load_model, save_file, save_model
from torch import nn

from padrec.io import FileFormatError, atomic_path, read_json, write_json

__all__ = ["load_training_state", "load_weights", "read_json", "save_training_state", "save_weights", "write_json"]


def save_weights(
    module: nn.Module, path: str | Path, meta: dict[str, Any] | None = None, only: set[str] | None = None
) -> None:
    """Save ``module``'s state to ``path`` (.safetensors) and ``meta`` to the .json sidecar.

    ``only`` restricts the file to these state-dict keys (a phase's trained parameters).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if only is None:
            save_model(module, str(tmp))
        else:
            state = module.state_dict()
            save_file({k: state[k].detach().contiguous().clone() for k in sorted(only)}, str(tmp))
    if meta is not None:
        write_json(path.with_suffix(".json"), meta)


def load_weights(module: nn.Module, path: str | Path, strict: bool = True, partial: bool = False) -> None:
    """Load weights saved by :func:`save_weights` into ``module`` (on its device).

    ``partial``: the file holds a subset of the state (saved with ``only``); every key in it
    must exist in ``module`` with the same shape.
    """
    device = next((p.device for p in module.parameters()), torch.device("cpu"))
    if partial:
        tensors = _read_safetensors(path, device)
        state = module.state_dict()
        bad = [k for k, v in tensors.items() if k not in state or state[k].shape != v.shape]
        if bad:
            raise RuntimeError(f"{path}: checkpoint does not match the model ({bad[:5]})")
        with torch.no_grad():
            for k, v in tensors.items():
                state[k].copy_(v)
        return
    _check_finite(path, _read_safetensors(path, "cpu"))
    try:
        missing, unexpected = load_model(module, str(path), strict=False, device=str(device))
    except RuntimeError as exc:  # shapes differ from the model's
        raise FileFormatError(path, f"checkpoint does not match the model ({str(exc).splitlines()[0]})") from exc
    missing = [k for k in missing if not _is_nonpersistent(module, k)]
    if strict and (missing or unexpected):
        raise RuntimeError(
            f"{path}: checkpoint does not match the model (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )


def _check_finite(path: str | Path, tensors: dict[str, torch.Tensor]) -> None:
    """A model whose weights hold NaN or inf scores nothing meaningful: refuse it."""
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise FileFormatError(
            path, f"{len(bad)} tensor(s) hold NaN or infinite values ({', '.join(bad[:3])}); the model cannot be used"
        )


def _read_safetensors(path: str | Path, device: Any, check_only: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a clear error naming the file when it is missing,
    truncated or not safetensors."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        if check_only:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as fh:
                fh.keys()
            return {}
        return load_file(str(path), device=str(device))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise FileFormatError(path, f"not a readable safetensors file ({exc})") from exc


def _is_nonpersistent(module: nn.Module, key: str) -> bool:
    return key not in module.state_dict()


def save_training_state(
    path: str | Path,
    optimizer: torch.optim.Optimizer,
    rng: dict[str, torch.Tensor],
    meta: dict[str, Any],
) -> None:
    """Save optimiser tensors + RNG states (safetensors) and param groups + ``meta`` (JSON)."""
    path = Path(path)
    sd = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"state.{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars[f"{idx}.{k}"] = v
    for k, v in rng.items():
        tensors[f"rng.{k}"] = v.cpu().contiguous()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    write_json(path.with_suffix(".json"), {"param_groups": sd["param_groups"], "scalars": scalars, **meta})


def load_training_state(path: str | Path, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Restore the optimiser from :func:`save_training_state`; return (rng states, meta)."""
    path = Path(path)
    tensors = _read_safetensors(path, "cpu")
    meta = read_json(path.with_suffix(".json"))
    state: dict[int, dict[str, Any]] = {}
    rng = {}
    for key, v in tensors.items():
        if key.startswith("rng."):
            rng[key[4:]] = v
            continue
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = v
    for key, v in meta.pop("scalars").items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    optimizer.load_state_dict({"state": state, "param_groups": meta.pop("param_groups")})
    return rng, meta
