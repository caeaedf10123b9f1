"""``engine import-engine``: record a TensorRT plan built elsewhere (``trtexec``) in an artifact folder.

``engine export --trt`` on a machine without TensorRT keeps the validated ONNX and prints the ``trtexec``
command that builds the same engine.  This module closes the loop: the plan that command wrote is copied
into the folder and recorded in the manifest with the same facts a built engine has (TensorRT version, GPU
and compute capability, the optimisation profile, sha256, cache key), so the TensorRT runtime's load-time
checks apply to it unchanged.

Where ``tensorrt`` imports (the machine that will run the plan), everything is read back from the plan
itself: it is deserialised on this GPU (which proves version and architecture), its input and output names
are compared with the graph's, and its optimisation profile must cover the graph's exported dims.  Where it
does not (importing on a CPU box that builds the Bento), the TensorRT version and compute capability are
the caller's word (``trtexec`` prints both), the profile is the graph's own (what the printed command asks
for), and the record says ``verified: false``; the runtime then reads the profile back from the plan at
load and refuses a mismatch, so an unverified record can never be served wrongly.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from ..io import sha256_file
from ..runtime.base import ArtifactMismatchError, RuntimeUnavailableError
from ..spec import GraphSpec
from .manifest import EngineRecord, Manifest
from .tensorrt import cache_key, gpu_identity, import_tensorrt, profile_shapes

log = logging.getLogger(__name__)

__all__ = ["PlanFacts", "import_plan", "plan_facts", "check_profile_covers"]


@dataclass
class PlanFacts:
    tensorrt: str
    gpu: str
    compute_capability: str
    profile: dict[str, list[list[int]]]
    inputs: list[str]
    outputs: list[str]
    verified: bool


def plan_facts(plan: Path) -> PlanFacts:
    """Deserialise ``plan`` on this machine's GPU and read back what it is (needs tensorrt and CUDA)."""
    trt = import_tensorrt()
    gpu, cc = gpu_identity()
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(plan.read_bytes())
    if engine is None:
        raise ArtifactMismatchError(
            f"{plan}: TensorRT {trt.__version__} cannot deserialise this plan on {gpu} (compute capability {cc}): "
            "it was built with another TensorRT version or for another GPU; rebuild it here"
        )
    inputs, outputs, profile = [], [], {}
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            inputs.append(name)
            profile[name] = [list(s) for s in engine.get_tensor_profile_shape(name, 0)]
        else:
            outputs.append(name)
    return PlanFacts(trt.__version__, gpu, cc, profile, inputs, outputs, verified=True)


def check_profile_covers(graph: str, plan_profile: dict[str, list[list[int]]], spec: GraphSpec) -> None:
    """The plan's optimisation profile must accept every shape the graph was exported for."""
    wanted = profile_shapes(spec)
    problems = []
    for name, (mn, _opt, mx) in wanted.items():
        got = plan_profile.get(name)
        if got is None:
            problems.append(f"input {name} has no profile in the plan")
            continue
        pmin, _popt, pmax = got
        if len(pmin) != len(mn) or any(a > b for a, b in zip(pmin, mn, strict=True)) or any(a < b for a, b in zip(pmax, mx, strict=True)):
            problems.append(f"input {name}: plan profile {pmin}..{pmax} does not cover the exported {mn}..{mx}")
    if problems:
        raise ArtifactMismatchError(f"graph {graph}: {'; '.join(problems)} (build it with the trtexec command `engine export --trt` printed)")


def import_plan(
    folder: str | Path,
    graph: str,
    plan: str | Path,
    *,
    precision: str | None = None,
    tensorrt_version: str | None = None,
    compute_capability: str | None = None,
    gpu: str | None = None,
) -> EngineRecord:
    """Copy ``plan`` into ``folder`` as ``GRAPH.PRECISION.plan`` and record it in the manifest."""
    folder, plan = Path(folder), Path(plan)
    manifest = Manifest.load(folder)
    if graph not in manifest.graphs:
        raise ValueError(f"{folder}: no graph {graph!r} in the manifest (graphs: {', '.join(manifest.graphs) or 'none'})")
    if not plan.is_file():
        raise FileNotFoundError(f"plan file {plan} does not exist")
    if plan.stat().st_size == 0:
        raise ValueError(f"plan file {plan} is empty")
    rec = manifest.graphs[graph]
    spec = GraphSpec.from_dict(rec.spec)
    precision = precision or manifest.precision
    if precision not in ("fp32", "fp16", "bf16"):
        raise ValueError(f"precision {precision!r}: TensorRT plans are fp32, fp16 or bf16")

    try:
        facts = plan_facts(plan)
    except RuntimeUnavailableError as exc:
        if not (tensorrt_version and compute_capability):
            raise RuntimeUnavailableError(
                f"{exc}; to record a plan here without TensorRT, give --tensorrt-version and --compute-capability "
                "of the machine that built it (trtexec prints both), and it is checked again at load"
            ) from None
        facts = PlanFacts(tensorrt_version, gpu or "unknown", compute_capability, profile_shapes(spec),
                          spec.input_names, spec.output_names, verified=False)
    else:
        for flag, given, actual in (("--tensorrt-version", tensorrt_version, facts.tensorrt),
                                    ("--compute-capability", compute_capability, facts.compute_capability)):
            if given and given != actual:
                raise ArtifactMismatchError(f"{flag} {given} contradicts the plan, which runs here on {actual}")
        if set(facts.inputs) != set(spec.input_names) or set(facts.outputs) != set(spec.output_names):
            raise ArtifactMismatchError(
                f"graph {graph}: the plan's tensors (inputs {facts.inputs}, outputs {facts.outputs}) are not the graph's "
                f"(inputs {spec.input_names}, outputs {spec.output_names}): a plan of another graph?"
            )
        check_profile_covers(graph, facts.profile, spec)

    name = f"{graph}.{precision}.plan"
    dest = folder / name
    if plan.resolve() != dest.resolve():
        tmp = dest.with_name(dest.name + ".tmp")
        shutil.copyfile(plan, tmp)
        tmp.replace(dest)
    digest = sha256_file(dest)
    onnx_sha = rec.onnx_sha256 or ""
    record = EngineRecord(
        path=name, sha256=digest, precision=precision, tensorrt=facts.tensorrt, gpu=facts.gpu,
        compute_capability=facts.compute_capability,
        cache_key=cache_key(onnx_sha, spec, precision, facts.tensorrt, facts.gpu, facts.compute_capability),
        profile=facts.profile, imported_from=str(plan.resolve()), verified=facts.verified,
    )
    rec.engine = record
    manifest.write(folder)
    log.info("graph %s: recorded %s (TensorRT %s, compute capability %s%s)", graph, name, facts.tensorrt,
             facts.compute_capability, "" if facts.verified else ", checked again at load")
    return record

