"""The one restartable, deterministic store writer shared by synth, ingest, degrade, fourmostify, infer and merge.

A job writes a *template* first (metadata and the variables known up front, `compute=False`), then
independent tasks each own whole chunks along one dimension ("regions"), compute them and write them with
`mode="r+"`. Completion is recorded explicitly, one marker per region, in the store's `_gridkit` subgroup.
Regions must be pure functions of (inputs, region): every random draw is seeded from (seed, region keys), so a
resumed store holds the same bytes as an uninterrupted one.

What keeps data safe (docs/store.md):
- **Inputs are never touched.** An output that is, contains or lies inside an input is refused before anything
  is written (`gridkit.files.check_output`).
- **One job per output.** A job holds an exclusive lock (`.<name>.lock` beside the output) while it writes; a
  second job on the same output is refused with "in use by another job".
- **Overwrite replaces atomically.** With `overwrite=True` an existing output stays untouched while the new one
  is written aside (`.<name>.overwrite`, resumable itself); when the last region is written the two are swapped,
  so an interrupted overwrite leaves the old output intact.
- **Resume checks content, not paths.** The job's fingerprint holds its parameters; each region's marker records
  a digest of the inputs that region read (`make_region.inputs(i, slice)`, e.g. the bytes of its spectrum
  files or the content digest of an input store) and of what it wrote. A rerun skips a region only if its inputs
  are unchanged, so a resumed output equals a fresh one even when an input changed in between.
- **Finished stores open plainly.** A complete store's metadata is consolidated (`consolidate`), so
  `xarray.open_zarr(path)` opens it in one read and without a warning; a job that resumes, grows or adds to a
  store drops that copy first (`unconsolidate`), so no reader ever sees metadata older than the arrays.
- **Corruption is detected.** Chunks are written with zstd checksums and always written (never skipped as empty),
  so a flipped bit or a truncated chunk fails its checksum when read (`reading` names the store and chunk) and a
  chunk the record says was written but is absent is an error when the store is opened (`open_complete`).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import os
import shutil
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping

import numpy as np
import xarray as xr
import zarr

from .errors import GridError, StoreError
from .files import atomic_write_text, check_output

RECORD_GROUP = "_gridkit"
#: store format of the completion record: 2 = zstd checksums, every chunk written, region digests
RECORD_VERSION = 2
#: the compressor of every array gridkit writes: zstd (its default level) with the frame checksum on
def compressor():
    from zarr.codecs import ZstdCodec

    return ZstdCodec(level=0, checksum=True)


def consolidate(path) -> None:
    """Consolidate the metadata of the finished store at `path` into its root `zarr.json`: plain
    `xarray.open_zarr(path)` then opens it without its fallback warning. Consolidated metadata is not yet part of the
    Zarr v3 specification (zarr-python warns so); readers that do not know it read each array's own metadata, which
    stays authoritative."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        warnings.filterwarnings("ignore", message="Object at .* is not recognized as a component")  # the record's marker folders
        zarr.consolidate_metadata(str(path), zarr_format=3)


def unconsolidate(path) -> None:
    """Drop the consolidated metadata of the store at `path` (if any) before it changes: a stale copy would show
    readers that use it (zarr's `open_group`, xarray by default) arrays of the old shape or without new variables."""
    root = Path(path) / "zarr.json"
    try:
        meta = json.loads(root.read_text())
    except (OSError, ValueError):
        return
    if meta.pop("consolidated_metadata", None) is not None:
        atomic_write_text(root, json.dumps(meta, indent=2))


def region_slices(n: int, size: int) -> list[slice]:
    """Split range(n) into consecutive slices of `size` (the last may be shorter)."""
    if size < 1:
        raise StoreError(f"region size must be >= 1, got {size}")
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """A random generator that depends only on (seed, keys): the same draw whoever computes it, whenever."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, *(int(k) & 0xFFFFFFFF for k in keys)])))


def digest(*parts) -> str:
    """sha256 of arrays (dtype, shape and bytes; text element by element) and JSON-able values."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(f"{part.dtype.str}{part.shape}".encode())
            if part.dtype.kind in "OUST" or str(part.dtype).startswith("StringDType"):
                h.update("\x00".join(map(str, part.ravel().tolist())).encode())
            else:
                h.update(np.ascontiguousarray(part).tobytes())
        elif isinstance(part, (bytes, bytearray)):
            h.update(part)
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _dataset_digest(ds: xr.Dataset) -> str:
    return digest(*[x for name in sorted(map(str, ds.variables)) for x in (name, np.asarray(ds[name].values))])


@dataclass(frozen=True)
class RegionStore:
    """A Zarr store being filled region by region along `dim`. `path` is where it is written; `final` where it
    is published (the same, except while an overwrite is written aside)."""

    path: Path
    dim: str
    region_size: int
    n: int
    fingerprint: str
    final: Path | None = None

    @property
    def target(self) -> Path:
        return self.final or self.path

    @property
    def regions(self) -> list[slice]:
        return region_slices(self.n, self.region_size)

    # -- completion record -------------------------------------------------------------------
    def _marker(self, kind: str, i: int) -> Path:
        return self.path / RECORD_GROUP / kind / f"{i:08d}.json"

    def markers(self) -> dict[int, dict]:
        """{region: the record of its writing} of the regions written."""
        folder = self.path / RECORD_GROUP / "done"
        return {int(p.stem): json.loads(p.read_text()) for p in folder.glob("*.json")} if folder.exists() else {}

    def done(self, inputs: Mapping[int, str] | None = None) -> set[int]:
        """Regions written, and (given `inputs`, {region: digest of its inputs now}) written from those inputs."""
        marks = self.markers()
        if inputs is None:
            return set(marks)
        return {i for i, m in marks.items() if m.get("inputs", "") == inputs.get(i, "")}

    def failed(self) -> dict[int, str]:
        folder = self.path / RECORD_GROUP / "failed"
        if not folder.exists():
            return {}
        return {int(p.stem): json.loads(p.read_text())["reason"] for p in folder.glob("*.json")}

    def mark(self, kind: str, i: int, info: Mapping | None = None) -> None:
        # atomic: a marker is either whole or absent
        atomic_write_text(self._marker(kind, i), json.dumps({"region": i, "time": _now(), **(info or {})}))
        if kind == "done":
            self._marker("failed", i).unlink(missing_ok=True)

    @property
    def complete(self) -> bool:
        return len(self.done()) == len(self.regions)

    # -- writing ----------------------------------------------------------------------------
    def write_region(self, i: int, ds: xr.Dataset, inputs: str = "") -> None:
        """Write region i (a dataset spanning exactly that slice of `dim`) and record it as done, with the digest
        of the inputs it was made from and of what it holds."""
        sl = self.regions[i]
        keep = [k for k, v in ds.variables.items() if self.dim in v.dims and k != self.dim]
        part = ds[keep].drop_vars([c for c in ds[keep].coords if c != self.dim], errors="ignore")
        if part.sizes.get(self.dim) != sl.stop - sl.start:
            raise StoreError(f"region {i} must have {sl.stop - sl.start} entries along {self.dim!r}, got {part.sizes.get(self.dim)}")
        part = vlen_strings(part.drop_vars(self.dim, errors="ignore"))
        for var in part.variables.values():
            var.encoding = {}
        part.to_zarr(self.path, region={self.dim: sl}, mode="r+", consolidated=False, write_empty_chunks=True)
        self.mark("done", i, {"inputs": inputs, "content": _dataset_digest(part)})

    def publish(self) -> Path:
        """Move a store written aside (an overwrite) into place: the old output is replaced in one rename
        each way, so an interruption leaves one of the two whole (`_recover` finishes or undoes it)."""
        if self.final is None or self.final == self.path:
            return self.path
        return swap_into_place(self.path, self.final)


def swap_into_place(new: Path, final: Path) -> Path:
    """Replace `final` (a store or a model directory, if it exists) by `new`, written aside beside it: one rename
    each way via `.<name>.replaced`, so an interruption leaves one of the two whole (`_recover` finishes or undoes
    it). Returns `final`."""
    new, final = Path(new), Path(final)
    old = _aside(final, "replaced")
    if old.exists():
        _remove(old)
    if final.exists() or final.is_symlink():
        os.rename(final, old)
    os.rename(new, final)
    _remove(old)
    return final


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _aside(path: Path, kind: str) -> Path:
    """The hidden sibling of an output used while it is replaced (`overwrite`: the new one; `replaced`: the old one)."""
    return path.parent / f".{path.name}.{kind}"


def open_region_store(path) -> RegionStore:
    """The RegionStore of an existing store written by `create`."""
    path = Path(path)
    try:
        attrs = dict(zarr.open_group(str(path / RECORD_GROUP), mode="r").attrs)
    except Exception as exc:  # noqa: BLE001 - any failure means: not one of ours
        raise StoreError(f"{path} is not a store written by gridkit (no {RECORD_GROUP} record)") from exc
    return RegionStore(path, attrs["dim"], int(attrs["region_size"]), int(attrs["n"]), attrs["fingerprint"])


def _record(path: Path) -> dict:
    try:
        return dict(zarr.open_group(str(path / RECORD_GROUP), mode="r").attrs)
    except Exception:  # noqa: BLE001
        return {}


# ---------------------------------------------------------------------------------------------- one job per output
_LOCKS: dict[str, int] = {}


def _lock(path: Path) -> None:
    """Take the exclusive lock of the output `path` for this process (re-entrant within it), or raise StoreError
    naming the job that holds it. The lock is an flock on `.<name>.lock` beside the output: the operating system
    releases it when the holder ends, however it ends."""
    import fcntl

    key = str(path.resolve())
    if key in _LOCKS:
        return
    lock = _aside(path, "lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"output {path} cannot be written: {exc.strerror} ({lock})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            raise StoreError(f"output {path} is in use by another job ({holder or 'unknown'}); wait for it to end or choose another --out") from None
        raise StoreError(f"output {path} cannot be locked: {exc.strerror}") from None
    try:
        same = os.path.samestat(os.fstat(fd), os.stat(lock))
    except FileNotFoundError:
        same = False
    if not same:  # the holder released and removed the file between our open and our lock: take the new one
        os.close(fd)
        return _lock(path)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()} on {os.uname().nodename}, since {_now()}".encode(), 0)
    _LOCKS[key] = fd


def release(path) -> None:
    """Release this process's lock of the output `path` (a no-op if it holds none)."""
    import fcntl

    fd = _LOCKS.pop(str(Path(path).resolve()), None)
    if fd is not None:
        _aside(Path(path), "lock").unlink(missing_ok=True)  # while still locked: a job that opened it re-checks (see _lock)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _recover(path: Path) -> None:
    """Finish or undo a swap interrupted between its two renames (see RegionStore.publish)."""
    old, new = _aside(path, "replaced"), _aside(path, "overwrite")
    if path.exists() or not old.exists():
        return
    try:
        done = open_region_store(new).complete if new.exists() else False
    except StoreError:
        done = False
    os.rename(new if done else old, path)


# ---------------------------------------------------------------------------------------------- creating
def create(
    path,
    template: xr.Dataset,
    *,
    dim: str,
    region_size: int,
    fingerprint: str,
    overwrite: bool = False,
    encoding: Mapping | None = None,
    inputs: Iterable = (),
) -> tuple[RegionStore, bool]:
    """Write the template of a store, or find the one a previous run of the same job left; take the output's lock.

    template: the whole dataset; variables along `dim` may be lazy (dask) and are not computed here, in-memory
    ones are written now. inputs: the job's input paths (the output may not be, contain or lie inside one).
    With `overwrite`, an existing output is replaced only when the new one is complete (written aside until
    then). Returns (store, resumed). The lock is released by `write_regions` (or `release`).
    """
    path = Path(path)
    inputs = list(inputs)
    check_output(path, inputs)
    check_output(_aside(path, "overwrite"), inputs)
    _lock(path)
    try:
        _recover(path)
        n = int(template.sizes[dim])
        where, final = path, None
        if path.exists() or path.is_symlink():
            if overwrite:
                where, final = _aside(path, "overwrite"), path
            else:
                rs = _existing(path, dim, region_size, n, fingerprint)
                unconsolidate(path)  # the store is resumed, so it may change: no reader may see its old metadata
                return _refresh_template(rs, template), True
        if where.exists():  # an overwrite interrupted earlier: resume it if it is the same job
            try:
                return _refresh_template(_existing(where, dim, region_size, n, fingerprint, final), template), True
            except StoreError:
                _remove(where)
        _write_template(where, template, dim, region_size, fingerprint, encoding)
        return RegionStore(where, dim, int(region_size), n, fingerprint, final), False
    except BaseException:
        release(path)
        raise


def _existing(path: Path, dim: str, region_size: int, n: int, fingerprint: str, final: Path | None = None) -> RegionStore:
    try:
        existing = open_region_store(path)
    except StoreError:
        raise StoreError(f"output {path} exists and is not a resumable gridkit store; pass overwrite=True (--overwrite) to replace it") from None
    if existing.fingerprint != fingerprint or existing.n != n or existing.dim != dim or existing.region_size != region_size:
        stored, now = _record(path).get("parameters"), getattr(fingerprint, "parameters", lambda: None)()
        diffs = _differences(now, stored) if isinstance(stored, Mapping) and now is not None else []
        if existing.n != n:
            diffs.append(f"{dim}s: {n} (stored {existing.n})")
        if existing.region_size != region_size and not any(d.startswith("chunk:") for d in diffs):
            diffs.append(f"chunk: {region_size} (stored {existing.region_size})")
        differ = "; ".join(diffs) if diffs else f"fingerprint {existing.fingerprint[:12]} != {fingerprint[:12]}"
        raise StoreError(
            f"output {path} exists and was made by a different job ({differ}); refusing to mix. "
            f"Choose another path or pass overwrite=True (--overwrite)"
        )
    return RegionStore(path, dim, region_size, n, fingerprint, final)


def _eager(template: xr.Dataset) -> xr.Dataset:
    """The variables of a template that are written with it (in memory: labels, ids, coordinates)."""
    return vlen_strings(template[[k for k, v in template.variables.items() if v.chunks is None]])


def _refresh_template(rs: RegionStore, template: xr.Dataset) -> RegionStore:
    """On resume, rewrite the template's in-memory variables if they changed since (they come from the inputs, e.g.
    a survey's S/N and coordinates that a catalog carries): the resumed store then equals a fresh one."""
    eager = _eager(template)
    new = _dataset_digest(eager)
    group = zarr.open_group(str(rs.path / RECORD_GROUP), mode="r+")
    if group.attrs.get("template") != new:
        for var in eager.variables.values():
            var.encoding = {}
        eager.to_zarr(rs.path, mode="r+", consolidated=False, write_empty_chunks=True)
        group.attrs["template"] = new
    return rs


def _write_template(path: Path, template: xr.Dataset, dim: str, region_size: int, fingerprint: str, encoding) -> None:
    n = int(template.sizes[dim])
    enc = {}
    for name, var in template.variables.items():
        e = dict((encoding or {}).get(name, {}))
        if dim in var.dims and name != dim:
            e.setdefault("chunks", tuple(region_size if d == dim else template.sizes[d] for d in var.dims))
        if var.dtype.kind != "O" and not (var.dtype.kind == "U"):
            e.setdefault("compressors", [compressor()])
        if e:
            enc[name] = e
    template = vlen_strings(template)
    for name, var in template.variables.items():
        if dim in var.dims and name != dim and var.chunks is not None:
            template[name] = var.chunk({dim: region_size})
    eager = _eager(template)
    try:
        template.to_zarr(path, mode="w-", compute=False, consolidated=False, encoding=enc, zarr_format=3, write_empty_chunks=True)
        group = zarr.open_group(str(path / RECORD_GROUP), mode="w", zarr_format=3)
        group.attrs.update({"dim": dim, "region_size": int(region_size), "n": n, "fingerprint": str(fingerprint), "created": _now(),
                            "version": RECORD_VERSION, "template": _dataset_digest(eager)})
        if isinstance(fingerprint, Fingerprint):  # the parameters beside their digest: a refused rerun names those that differ
            group.attrs["parameters"] = fingerprint.parameters()
    except BaseException:
        _remove(path)  # nothing half-written stays behind
        raise


def vlen_strings(ds: xr.Dataset) -> xr.Dataset:
    """`ds` with numpy fixed-width unicode variables (and coordinates) as variable-length strings: Zarr v3 has
    no spec for numpy `<U` (zarr warns that such arrays may become unreadable)."""
    out = ds.copy()
    for name, var in ds.variables.items():
        if var.dtype.kind == "U":
            out[name] = var.astype(object)
    return out


# ---------------------------------------------------------------------------------------------- reading
def open_complete(path, what: str = "store", *, chunks: dict | None = None, allow_incomplete: bool = False,
                  rerun: str = "rerun the command that made it to resume") -> xr.Dataset:
    """Open a Zarr store lazily (`what` names it in errors); refuse one whose writing was interrupted (its
    completion record has regions not done) unless `allow_incomplete`, and one whose record says a chunk was
    written that is not there."""
    path = Path(path)
    if not path.exists() and _aside(path, "replaced").exists():  # an overwrite was interrupted mid-swap: finish or undo it
        held = str(path.resolve()) in _LOCKS
        _lock(path)
        try:
            _recover(path)
        finally:
            if not held:
                release(path)
    if not path.exists():
        raise GridError(f"{what} {path} does not exist")
    try:
        ds = xr.open_zarr(path, consolidated=False, chunks={} if chunks is None else chunks)
    except Exception as exc:  # noqa: BLE001
        raise GridError(f"{what} {path} is not a readable Zarr store: {exc}") from exc
    if (path / RECORD_GROUP).exists():
        rs = open_region_store(path)
        if not allow_incomplete and not rs.complete:
            raise StoreError(f"{what} {path} is incomplete ({len(rs.regions) - len(rs.done())} of {len(rs.regions)} regions not written); {rerun}")
        missing = missing_chunks(path)
        if missing:
            raise StoreError(f"{what} {path} is damaged: chunk {missing[0]} is missing although its region was written"
                             + (f" ({len(missing)} chunks missing)" if len(missing) > 1 else "") + "; rebuild it (rerun the command that made it with --overwrite)")
    return ds


def _arrays(path: Path) -> Iterator[tuple[str, zarr.Array]]:
    group = zarr.open_group(str(path), mode="r")
    for name, arr in group.arrays():
        yield name, arr


def _chunk_file(path: Path, name: str, arr: zarr.Array, coords: tuple[int, ...]) -> Path:
    return path / name / arr.metadata.encode_chunk_key(coords)


def missing_chunks(path) -> list[str]:
    """Chunk files (as `variable/key`) of a gridkit store that its completion record says were written but that
    are absent. Only for stores whose writer writes every chunk (record version >= 2)."""
    path = Path(path)
    record = _record(path)
    if int(record.get("version", 1)) < RECORD_VERSION:
        return []
    rs = open_region_store(path)
    written = [rs.regions[i] for i in sorted(rs.done())]
    out = []
    for name, arr in _arrays(path):
        if arr.ndim == 0 or arr.size == 0:
            continue
        files = arr.shards or arr.chunks  # a sharded array has one file per shard
        grid = [range(-(-s // c)) for s, c in zip(arr.shape, files)]
        first = files[0]
        along = (getattr(arr.metadata, "dimension_names", None) or (None,))[0] == rs.dim
        rows = sorted({k for sl in written for k in range(sl.start // first, -(-sl.stop // first))}) if along else grid[0]
        for coords in _product([rows, *grid[1:]]):
            if not _chunk_file(path, name, arr, coords).exists():
                out.append(f"{name}/{arr.metadata.encode_chunk_key(coords)}")
    return out


def _product(axes):
    import itertools

    return itertools.product(*axes)


def corrupt_chunks(path, variables: Iterable[str] | None = None, rows: slice | None = None) -> list[str]:
    """Chunks (`variable/key: reason`) of the store at `path` that cannot be decoded (a failed zstd checksum, a
    truncated file) or are absent, reading each chunk on its own. `rows`: only the chunks holding these indices of
    the first dimension."""
    path = Path(path)
    want = None if variables is None else set(variables)
    out = []
    for name, arr in _arrays(path):
        if (want is not None and name not in want) or arr.ndim == 0 or arr.size == 0:
            continue
        files = arr.shards or arr.chunks  # blocks are shards when sharded
        grid = [range(-(-s // c)) for s, c in zip(arr.shape, files)]
        if rows is not None:
            grid[0] = range(rows.start // files[0], -(-rows.stop // files[0]))
        for coords in _product(grid):
            try:
                arr.get_block_selection(coords)
            except Exception as exc:  # noqa: BLE001 - whatever the codec raises is the reason
                out.append(f"{name}/{arr.metadata.encode_chunk_key(coords)}: {' '.join(str(exc).split())}")
    return out


@contextlib.contextmanager
def reading(path, what: str = "store", variables: Iterable[str] | None = None, rows: slice | None = None):
    """Run a block that reads the store at `path` (or each of a list of stores); if it fails and a store has chunks
    that cannot be decoded, raise StoreError naming the store and those chunks instead of the codec's anonymous
    error. `variables`, `rows`: where to look (default: everywhere)."""
    try:
        yield
    except (StoreError, GridError, KeyboardInterrupt):
        raise
    except Exception as exc:
        for p in ([path] if isinstance(path, (str, os.PathLike)) else list(path)):
            try:
                bad = corrupt_chunks(p, variables, rows)
            except Exception:  # noqa: BLE001 - the scan itself failed (not a Zarr store...): look at the next
                bad = []
            if bad:
                raise StoreError(f"{what} {p} is damaged: chunk {bad[0]}" + (f" (and {len(bad) - 1} more)" if len(bad) > 1 else "")
                                 + "; rebuild it (rerun the command that made it with --overwrite)") from exc
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def fingerprint(*parts) -> str:
    """A stable hash of JSON-able job parameters (a `Fingerprint`: it keeps `parts`, which the store records)."""
    fp = Fingerprint(hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest())
    fp.parts = parts
    return fp


class Fingerprint(str):
    """The hex digest of a job's parameters that remembers them (`parts`), so that a store records them beside the
    digest and a refused rerun names the parameters that differ (`parameters`, `_differences`)."""

    parts: tuple = ()

    def parameters(self) -> dict:
        return job_parameters(self.parts)


#: names of the positional parameters of each job's fingerprint (after its name); None: a dict of named ones
PART_NAMES = {
    "degrade": ("input", None, "chunk"),
    "ingest": ("spectrum files", "labels", "chunk"),
    "synth": ("backend", "recipe", "wavelength grid", "label values", "labels", "chunk"),
    "synth-prior": (None,),
    "fourmostify": ("stars", None, None, "chunk"),
    "infer": ("model", "labels", "survey", "samples", "seed", "chunk", "missing"),
    "write_catalog": ("dim", "chunk", "stars", "template", "variables"),
    "write_dataset": ("dim", "chunk"),
    "mock_survey": ("cube", "snr", "split", "model", "models", "seed", "id prefix"),
    "merge-grids": ("grids",),
    "merge": ("catalogs", "on duplicate"),
}
_LONG = 1024  # a recorded value longer than this (JSON characters) is recorded as its digest


def job_parameters(parts) -> dict:
    """{name: JSON value} of a fingerprint's parts: positional parts named by `PART_NAMES` of the job (the string
    part naming it), a dict part by its keys, a leading fingerprint (a job extended) by its own; others `part N`.
    A long value (file lists, per-star plans) is kept as its `sha256:` digest."""
    flat = list(parts)
    while flat and isinstance(flat[0], Fingerprint) and flat[0].parts:  # fingerprint(fp, more): fp's parameters, then more
        flat = [*flat[0].parts, _END, *flat[1:]]
    out: dict = {}
    names: list = []

    def put(name, value):
        value = _finite(json.loads(json.dumps(value, sort_keys=True, default=str)))
        text = json.dumps(value, sort_keys=True)
        out[name if name not in out else f"{name} ({len(out)})"] = value if len(text) <= _LONG else "sha256:" + hashlib.sha256(text.encode()).hexdigest()

    for k, part in enumerate(flat):
        if part is _END:
            names = []
            continue
        if not names and isinstance(part, str) and part in PART_NAMES:
            names = list(PART_NAMES[part])
            continue
        name = names.pop(0) if names else f"part {k}"
        if name is None or (isinstance(part, Mapping) and name.startswith("part ")):
            if isinstance(part, Mapping):
                for key, value in part.items():
                    put(str(key), value)
                continue
            name = f"part {k}"
        put(name, part)
    return out


_END = object()


def _finite(value):
    """A JSON value with inf/nan as strings (the record is strict JSON)."""
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, list):
        return [_finite(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def _show(value, width: int = 60) -> str:
    if isinstance(value, str) and value.startswith("sha256:"):
        return value[:19]  # a long value's digest: its first 12 hex digits
    text = "none" if value is _END else json.dumps(value, sort_keys=True)
    return text if len(text) <= width else text[:width - 1] + "…"


def _differences(now: Mapping, stored: Mapping) -> list[str]:
    """'name: new (stored old)' of every parameter that differs."""
    return [f"{name}: {_show(now.get(name, _END))} (stored {_show(stored.get(name, _END))})"
            for name in [*now, *(k for k in stored if k not in now)] if now.get(name, _END) != stored.get(name, _END)]


# ---------------------------------------------------------------------------------------------- the regions
def _itself(obj):
    return obj


def _run_region(store: RegionStore, make_region: Callable[[int, slice], xr.Dataset], i: int, on_error: str,
                inputs: str = "") -> tuple[int, str | None]:
    import dask

    try:
        with dask.config.set(scheduler="synchronous"):  # a task computes its own region, no nested scheduling
            ds = make_region(i, store.regions[i])
            store.write_region(i, ds, inputs)
        return i, None
    except Exception as exc:
        if on_error == "raise":
            raise
        reason = f"{type(exc).__name__}: {exc}"
        store.mark("failed", i, {"reason": reason, "traceback": traceback.format_exc(limit=5)})
        return i, reason


def region_inputs(store: RegionStore, make_region) -> dict[int, str]:
    """{region: digest of the inputs it reads now}, from `make_region.inputs(i, slice)` where it has one."""
    fn = getattr(make_region, "inputs", None)
    return {i: (fn(i, sl) if fn is not None else "") for i, sl in enumerate(store.regions)}


def write_regions(
    store: RegionStore,
    make_region: Callable[[int, slice], xr.Dataset],
    *,
    client=None,
    n_threads: int | None = None,
    on_error: str = "raise",
    progress: bool = True,
    desc: str = "regions",
    resources: Mapping[str, float] | None = None,
    only: Iterable[int] | None = None,
) -> dict[int, str]:
    """Compute and write every region not yet written from the current inputs; return {region: reason} of the
    regions that failed. When every region is written, an overwrite written aside is published; the output's
    lock is released at the end, however it ends.

    make_region(i, slice) -> Dataset spanning that slice; it must be picklable when `client` is a distributed
    Client (it runs on the workers, which open their inputs themselves); its optional method `inputs(i, slice)`
    returns a digest of what region i reads (a region written from other inputs is written again). Without a
    client the regions run on a local thread pool. on_error: "raise" stops at the first failure, "record"
    records it (rerun to retry) and goes on.
    """
    if on_error not in ("raise", "record"):
        raise ValueError(f"on_error must be 'raise' or 'record', got {on_error!r}")
    try:
        failures = _write_regions(store, make_region, client, n_threads, on_error, progress, desc, resources, only)
        if not failures and store.complete:
            consolidate(store.path)  # before the swap: the published store is whole, consolidated metadata included
            store.publish()
        return failures
    finally:
        release(store.target)


def _write_regions(store, make_region, client, n_threads, on_error, progress, desc, resources, only) -> dict[int, str]:
    from tqdm.auto import tqdm

    inputs = region_inputs(store, make_region)
    done = store.done(inputs)
    todo = [i for i in (range(len(store.regions)) if only is None else only) if i not in done]
    failures: dict[int, str] = {}
    bar = tqdm(total=len(store.regions), initial=len(store.regions) - len(todo), desc=desc, disable=not progress, unit="region")
    try:
        if client is not None and todo:
            from distributed import as_completed as dist_as_completed

            # make_region goes to the cluster once, as the result of a task (each worker fetches it once; recomputed if
            # the worker holding it dies, which scattered data would not be), not pickled into every task: it can hold
            # a whole label table or a lazy dataset's graph, and 924 tasks each carrying 3 MB held 3 GB in the
            # scheduler and GBs on the workers (a 29,548-model synth)
            maker = client.submit(_itself, make_region, key=f"make-region-{desc}-{store.fingerprint[:8]}-{uuid.uuid4().hex[:8]}", pure=False)
            pending = dist_as_completed([
                client.submit(_run_region, store, maker, i, on_error, inputs[i], key=f"{desc}-{store.fingerprint[:8]}-{i}",
                              resources=resources, pure=False)
                for i in todo
            ])
            for fut in pending:
                i, reason = fut.result()
                fut.release()  # a finished region's task is forgotten on the cluster now, not at the end of the job
                if reason is not None:
                    failures[i] = reason
                bar.update(1)
            del maker
        else:
            with ThreadPoolExecutor(max_workers=n_threads or os.cpu_count() or 1) as pool:
                futures = [pool.submit(_run_region, store, make_region, i, on_error, inputs[i]) for i in todo]
                try:
                    for fut in as_completed(futures):
                        i, reason = fut.result()
                        if reason is not None:
                            failures[i] = reason
                        bar.update(1)
                except BaseException:
                    for fut in futures:
                        fut.cancel()
                    raise
    finally:
        bar.close()
    return failures


class SliceOf:
    """make_region for a lazy dataset: compute its slice along `dim` (picklable with its dask graph). `source`:
    the digest of the inputs the dataset is computed from (the same for every region); `stores`: those inputs
    (named when one of them turns out damaged)."""

    def __init__(self, ds: xr.Dataset, dim: str, source: str = "", stores=()):
        self.ds, self.dim, self.source, self.stores = ds, dim, source, [str(p) for p in stores]

    def __call__(self, i: int, sl: slice) -> xr.Dataset:
        with reading(self.stores, "input"):
            return self.ds.isel({self.dim: sl}).compute()

    def inputs(self, i: int, sl: slice) -> str:
        return self.source


def write_dataset(
    ds: xr.Dataset,
    path,
    *,
    dim: str,
    region_size: int,
    fingerprint_parts=(),
    overwrite: bool = False,
    client=None,
    progress: bool = True,
    desc: str = "writing",
    encoding: Mapping | None = None,
    inputs: Iterable = (),
) -> RegionStore:
    """Write a (lazy) dataset region by region through the restartable writer; resume if interrupted.

    inputs: the paths the dataset is computed from: never overwritten, and their content identity decides
    whether written regions are still valid on a rerun."""
    inputs = [Path(p) for p in inputs]
    fp = fingerprint("write_dataset", dim, region_size, *fingerprint_parts) if fingerprint_parts else fingerprint("write_dataset", dim, region_size, _describe(ds))
    store, _ = create(path, ds, dim=dim, region_size=region_size, fingerprint=fp, overwrite=overwrite, encoding=encoding, inputs=inputs)
    try:
        make_region = SliceOf(ds, dim, digest([store_identity(p) for p in inputs]), [p for p in inputs if p.is_dir()])
    except BaseException:
        release(store.target)
        raise
    failures = write_regions(store, make_region, client=client, progress=progress, desc=desc)
    if failures:
        raise StoreError(f"{len(failures)} region(s) of {path} failed: {next(iter(failures.values()))}")
    return open_region_store(store.target)


def store_identity(path) -> dict:
    """What identifies an input's content in a job's record, however its path is spelt. A store written by gridkit:
    its writer's fingerprint and the digests of its template and of every region it wrote, plus its array metadata
    (variables added later count); any other path: a digest of every file's name, size and modification time and of
    its Zarr metadata."""
    path = Path(path).resolve()
    record = _record(path) if path.is_dir() else {}
    if int(record.get("version", 1)) >= RECORD_VERSION:
        rs = open_region_store(path)
        marks = rs.markers()
        arrays = {name: [list(arr.shape), str(arr.dtype)] for name, arr in _arrays(path)}
        return {"store": digest(rs.fingerprint, record.get("template", ""), [marks[i].get("content") for i in sorted(marks)], arrays)}
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(path) if f != path else f.name}|{st.st_size}|{st.st_mtime_ns}\n".encode())
        if f.name == "zarr.json":
            h.update(f.read_bytes())
    return {"files": h.hexdigest()}


def _describe(ds: xr.Dataset) -> dict:
    # Identity of a dataset for the fingerprint: structure + attrs + dask graph names (deterministic tokens).
    out = {"sizes": dict(ds.sizes), "attrs": {k: str(v) for k, v in ds.attrs.items()}}
    for name, var in ds.variables.items():
        data = var.data
        out[str(name)] = getattr(data, "name", None) or __import__("dask").base.tokenize(np.asarray(data))
    return out
