"""Precomputed outputs: decoded audio made elsewhere, read from folders and aligned to the references.

One reader serves both the ``precomputed`` system (:class:`PrecomputedFolders`) and ``codecbench score``
(:mod:`codecbench.bench.score`). Real decoded folders differ from their references in sample rate, length and
sample format; the reader

- pairs files by name stem (``a.wav`` in the reference folder with ``a.flac`` in the decoded folder); a missing,
  extra or doubled stem stops with an :class:`~codecbench.bench.core.errors.AudioInputError` naming the files;
- reads each file with :mod:`codecbench.bench.core.audio` (soundfile) at its header rate, or at an override rate
  (``sample_rate_hz`` in the folder's ``codecbench.yaml`` or given by the caller), and resamples it to the
  evaluation rate (soxr VHQ);
- compares durations: within ``length_tolerance`` (a fraction, default 3 %) the decoded audio is trimmed or
  zero-padded at its end to the reference length; beyond it the reader stops, and when the length ratio equals
  a ratio of common sample rates (e.g. 48000/44100) the message says the header rate looks wrong and how to
  override it;
- records per item what it did (:class:`AlignmentRecord`: rates, format, samples trimmed or padded, ratio).

Folder description ``codecbench.yaml`` (optional; see docs/precomputed-and-score.md)::

    codec: S-PRESSO          # name of the system that produced the files (required)
    bitrate_kbps: 1.32       # declared nominal bitrate, or for continuous codecs:
    frame_rate_hz: 25        #   declared latent frame rate
    compression_ratio: 64    #   declared input samples per latent value
    sample_rate_hz: 48000    # optional: the true rate when the file headers are wrong
    description: "..."       # optional free text

Shapes: C channels, T samples.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from codecbench.bench.core import audio as audio_ops
from codecbench.bench.core.errors import AudioInputError, ConfigError
from codecbench.codecs.base import CodecInfo, NoBitstream, OperatingPoint, ParamSpec, Roundtrip, System

CONFIG_FILENAME = "codecbench.yaml"
SPEC_KEYS = ("codec", "bitrate_kbps", "frame_rate_hz", "compression_ratio", "sample_rate_hz", "description")
COMMON_SAMPLE_RATES_HZ = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000)
DEFAULT_LENGTH_TOLERANCE = 0.03
# the closest ratio of two common rates is 44100/48000 (8.1 % apart): a tolerance above 5 % could absorb a wrong
# header rate, so it is refused
MAX_LENGTH_TOLERANCE = 0.05
_MAX_LISTED = 5


# --------------------------------------------------------------------------------------------------------------
# Folder description (codecbench.yaml)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FolderSpec:
    """What a folder of decoded files declares about itself (from its ``codecbench.yaml``, if any).

    Rates are declared by whoever made the files, not measured here: ``rate_source`` says so in every result.
    """

    folder: Path
    codec: str
    bitrate_kbps: float | None = None
    frame_rate_hz: float | None = None
    compression_ratio: float | None = None
    sample_rate_hz: int | None = None
    description: str = ""
    spec_path: Path | None = None

    @property
    def condition(self) -> str:
        """The folder's name: the operating-point label of its outputs."""
        return self.folder.name

    def declared_rates(self) -> dict[str, float]:
        """The declared rate columns (keys of :data:`codecbench.codecs.bitstream.RATE_KEYS`) that the YAML gives."""
        rates = {"bitrate_kbps": self.bitrate_kbps, "frame_rate_hz": self.frame_rate_hz,
                 "compression_ratio": self.compression_ratio}
        return {key: float(value) for key, value in rates.items() if value is not None}

    @property
    def rate_source(self) -> str:
        if self.spec_path is None:
            return f"none (no {CONFIG_FILENAME})"
        return f"declared in {self.spec_path} (not measured)"


def read_folder_spec(folder: str | Path) -> FolderSpec:
    """Read ``folder/codecbench.yaml``; without one, the codec name is the folder name and no rate is declared."""
    import yaml

    folder = Path(folder)
    path = folder / CONFIG_FILENAME
    if not path.is_file():
        return FolderSpec(folder=folder, codec=folder.name)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})".replace("\n", " ")) from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of keys {list(SPEC_KEYS)}, got {type(data).__name__}")
    unknown = sorted(set(data) - set(SPEC_KEYS))
    if unknown:
        raise ConfigError(f"{path}: unknown key {unknown[0]!r}; valid keys: {', '.join(SPEC_KEYS)}")
    if not isinstance(data.get("codec"), str) or not data["codec"].strip():
        raise ConfigError(f"{path}: key 'codec' (the name of the system that made the files) is required")
    values: dict[str, Any] = {}
    for key in ("bitrate_kbps", "frame_rate_hz", "compression_ratio", "sample_rate_hz"):
        value = data.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise ConfigError(f"{path}: key {key!r} must be a positive number, got {value!r}")
        if key == "sample_rate_hz":
            if float(value) != int(value):
                raise ConfigError(f"{path}: key 'sample_rate_hz' must be an integer, got {value!r}")
            value = int(value)
        values[key] = value
    if not any(key in values for key in ("bitrate_kbps", "frame_rate_hz", "compression_ratio")):
        raise ConfigError(
            f"{path}: declares no rate; give bitrate_kbps (discrete codecs) or frame_rate_hz / compression_ratio "
            "(continuous codecs)"
        )
    return FolderSpec(folder=folder, codec=data["codec"].strip(), description=str(data.get("description", "")),
                      spec_path=path, **values)


# --------------------------------------------------------------------------------------------------------------
# Listing and pairing
# --------------------------------------------------------------------------------------------------------------


def _names(paths: Sequence[str], limit: int = _MAX_LISTED) -> str:
    shown = ", ".join(paths[:limit])
    return shown + (f" and {len(paths) - limit} more" if len(paths) > limit else "")


def list_audio(folder: str | Path) -> dict[str, Path]:
    """The audio files directly in ``folder`` (suffixes of :data:`bench.core.audio.AUDIO_SUFFIXES`) by name stem.

    Raises :class:`AudioInputError` for a missing folder, a folder without audio, or two files with one stem.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise AudioInputError(folder, "folder does not exist")
    found: dict[str, Path] = {}
    doubled: list[str] = []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file() or path.suffix.lower() not in audio_ops.AUDIO_SUFFIXES:
            continue
        if path.stem in found:
            doubled.append(f"{found[path.stem].name} and {path.name}")
            continue
        found[path.stem] = path
    if doubled:
        raise AudioInputError(folder, f"two files share a name stem (pairing is by stem): {_names(doubled)}")
    if not found:
        raise AudioInputError(folder, f"no audio files (looked for {', '.join(audio_ops.AUDIO_SUFFIXES)})")
    return found


def pair_files(reference_dir: str | Path, decoded_dir: str | Path) -> list[tuple[str, Path, Path]]:
    """(stem, reference path, decoded path) for every stem, sorted; missing or extra decoded files raise."""
    references, decoded = list_audio(reference_dir), list_audio(decoded_dir)
    missing = sorted(set(references) - set(decoded))
    extra = sorted(set(decoded) - set(references))
    problems = []
    if missing:
        problems.append(f"{len(missing)} reference file(s) have no decoded file: "
                        f"{_names([references[s].name for s in missing])}")
    if extra:
        problems.append(f"{len(extra)} decoded file(s) have no reference in {reference_dir}: "
                        f"{_names([decoded[s].name for s in extra])}")
    if problems:
        raise AudioInputError(decoded_dir, "; ".join(problems) + " (files are paired by name stem)")
    return [(stem, references[stem], decoded[stem]) for stem in sorted(references)]


# --------------------------------------------------------------------------------------------------------------
# Reading and aligning one file
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AlignmentRecord:
    """What the reader did to one file to bring it to the evaluation format (one per item and side)."""

    path: str
    header_sample_rate_hz: int
    read_sample_rate_hz: int  # the header rate, or the override
    rate_override: str  # "" or where the override came from
    eval_sample_rate_hz: int
    sample_format: str  # soundfile subtype, e.g. PCM_16, FLOAT
    file_channels: int
    channel_policy: str
    file_samples: int  # at the read rate
    resampled_samples: int  # at the evaluation rate, before trimming or padding
    start_samples: int  # where the item starts in the file (segments), at the evaluation rate
    target_samples: int
    trimmed_samples: int
    padded_samples: int
    length_ratio: float  # decoded duration / expected duration (whole files; NaN for segments)
    resampler: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """One line, e.g. ``read as 48000 Hz (header 44100 Hz, override from --deg-sample-rate-hz); padded 2041``."""
        parts = []
        if self.rate_override and self.read_sample_rate_hz != self.header_sample_rate_hz:
            parts.append(f"read as {self.read_sample_rate_hz} Hz (header {self.header_sample_rate_hz} Hz, "
                         f"override from {self.rate_override})")
        if self.read_sample_rate_hz != self.eval_sample_rate_hz:
            parts.append(f"resampled {self.read_sample_rate_hz}->{self.eval_sample_rate_hz} Hz")
        if self.channel_policy != "none":
            parts.append(self.channel_policy)
        if self.start_samples:
            parts.append(f"from sample {self.start_samples}")
        if self.trimmed_samples:
            parts.append(f"trimmed {self.trimmed_samples}")
        if self.padded_samples:
            parts.append(f"padded {self.padded_samples}")
        parts.append(self.sample_format)
        return "; ".join(parts)


@dataclass
class LoadedAudio:
    """One file read at its (header or override) rate and resampled: ``audio`` float32 [C, T] at ``eval`` rate."""

    path: Path
    audio: np.ndarray
    header_sample_rate_hz: int
    read_sample_rate_hz: int
    rate_override: str
    eval_sample_rate_hz: int
    sample_format: str
    file_channels: int
    file_samples: int
    resampler: str


def load(path: str | Path, eval_sample_rate_hz: int, rate_override_hz: int | None = None,
         override_source: str = "") -> LoadedAudio:
    """Read ``path`` (bench.audio) and resample it to ``eval_sample_rate_hz``.

    ``rate_override_hz``: the rate the samples really have when the header is wrong (recorded with
    ``override_source``); the samples are reinterpreted at that rate, not resampled from the header rate.
    """
    import soundfile

    path = Path(path)
    data, header_hz = audio_ops.read(path)
    if data.shape[1] == 0:
        raise AudioInputError(path, "no samples")
    if not np.all(np.isfinite(data)):
        raise AudioInputError(path, "contains NaN or Inf samples")
    read_hz = int(rate_override_hz) if rate_override_hz else header_hz
    resampled = audio_ops.resample(torch.from_numpy(data), read_hz, eval_sample_rate_hz).numpy()
    return LoadedAudio(
        path=path, audio=resampled, header_sample_rate_hz=header_hz, read_sample_rate_hz=read_hz,
        rate_override=override_source if rate_override_hz else "", eval_sample_rate_hz=eval_sample_rate_hz,
        sample_format=soundfile.info(str(path)).subtype, file_channels=int(data.shape[0]),
        file_samples=int(data.shape[1]),
        resampler=audio_ops.RESAMPLER if read_hz != eval_sample_rate_hz else "none",
    )


def header_rate_hint(length_ratio: float, read_sample_rate_hz: int, tolerance: float) -> int | None:
    """The common rate the samples probably have when ``length_ratio`` (decoded / expected duration) equals a
    ratio of common sample rates, e.g. 48000/44100 for 48 kHz samples under a 44.1 kHz header; else None."""
    if not math.isfinite(length_ratio) or length_ratio <= 0:
        return None
    implied_hz = length_ratio * read_sample_rate_hz
    candidates = [r for r in COMMON_SAMPLE_RATES_HZ if r != read_sample_rate_hz and abs(implied_hz / r - 1) <= tolerance]
    return min(candidates, key=lambda r: abs(implied_hz / r - 1)) if candidates else None


def check_tolerance(length_tolerance: float) -> float:
    length_tolerance = float(length_tolerance)
    if not 0.0 <= length_tolerance <= MAX_LENGTH_TOLERANCE:
        raise ConfigError(
            f"length tolerance {length_tolerance} is outside [0, {MAX_LENGTH_TOLERANCE}] (a fraction of the "
            "reference length; above 5 % a wrong header rate such as 44100 for 48000 Hz could pass unnoticed)"
        )
    return length_tolerance


def fit(loaded: LoadedAudio, target_samples: int, channels: int, length_tolerance: float, *,
        start_samples: int = 0, whole_file: bool = True, reference: str = "") -> tuple[np.ndarray, AlignmentRecord]:
    """Cut ``loaded`` to ``target_samples`` from ``start_samples`` (evaluation rate) and adapt its channels.

    ``whole_file``: the item is the whole file, so its length must match ``target_samples`` within the
    tolerance (either way); otherwise (a segment) only a shortfall is checked. Returns audio [channels, target]
    and its record; raises :class:`AudioInputError` beyond the tolerance, with a header-rate hint where one fits.
    """
    have = loaded.audio.shape[1]
    end = start_samples + target_samples
    available = max(0, min(have, end) - start_samples)
    length_ratio = have / end if whole_file else math.nan
    too_long = whole_file and have > end * (1 + length_tolerance)
    too_short = available < target_samples * (1 - length_tolerance)
    if too_long or too_short:
        where = f" (segment from sample {start_samples})" if start_samples else ""
        versus = f"reference {reference}" if reference else "the item"
        problem = (
            f"length {have / loaded.eval_sample_rate_hz:.3f} s at {loaded.read_sample_rate_hz} Hz vs "
            f"{end / loaded.eval_sample_rate_hz:.3f} s for {versus}{where}: ratio {have / end:.4f}, beyond the "
            f"tolerance of {length_tolerance:.0%}"
        )
        hint = header_rate_hint(have / end, loaded.read_sample_rate_hz, length_tolerance)
        if hint is not None:
            problem += (
                f"; the ratio matches {hint}/{loaded.read_sample_rate_hz} = {hint / loaded.read_sample_rate_hz:.4f} "
                f"within the tolerance: the header rate "
                f"({loaded.header_sample_rate_hz} Hz) looks wrong; if the samples are {hint} Hz, read them so "
                f"(sample_rate_hz: {hint} in the folder's {CONFIG_FILENAME}, the codec option sample_rate_hz, or "
                f"codecbench score --deg-sample-rate-hz {hint})"
            )
        raise AudioInputError(loaded.path, problem)
    segment = loaded.audio[:, start_samples:end]
    padded = target_samples - segment.shape[1]
    if padded:
        segment = np.pad(segment, ((0, 0), (0, padded)))
    trimmed = (have - end) if (whole_file and have > end) else 0
    adapted, policy = audio_ops.match_channels(torch.from_numpy(np.ascontiguousarray(segment))[None], channels)
    record = AlignmentRecord(
        path=str(loaded.path), header_sample_rate_hz=loaded.header_sample_rate_hz,
        read_sample_rate_hz=loaded.read_sample_rate_hz, rate_override=loaded.rate_override,
        eval_sample_rate_hz=loaded.eval_sample_rate_hz, sample_format=loaded.sample_format,
        file_channels=loaded.file_channels, channel_policy=policy, file_samples=loaded.file_samples,
        resampled_samples=have, start_samples=start_samples, target_samples=target_samples,
        trimmed_samples=int(trimmed), padded_samples=int(padded), length_ratio=float(length_ratio),
        resampler=loaded.resampler,
    )
    return np.ascontiguousarray(adapted[0].numpy(), dtype=np.float32), record


# --------------------------------------------------------------------------------------------------------------
# Reading a pair of folders (codecbench score)
# --------------------------------------------------------------------------------------------------------------


@dataclass
class AlignedItem:
    """One reference/decoded pair at the evaluation rate: ``reference`` and ``decoded`` float32 [C, T]."""

    item: str
    reference: np.ndarray
    decoded: np.ndarray
    reference_record: AlignmentRecord
    decoded_record: AlignmentRecord


@dataclass
class AlignedFolder:
    """A decoded folder read against its references: its description and the aligned items (sorted by stem)."""

    spec: FolderSpec
    items: list[AlignedItem] = field(default_factory=list)


def read_pairs(
    reference_dir: str | Path,
    decoded_dir: str | Path,
    *,
    sample_rate_hz: int = 48000,
    length_tolerance: float = DEFAULT_LENGTH_TOLERANCE,
    decoded_sample_rate_hz: int | None = None,
    override_source: str = "argument decoded_sample_rate_hz",
) -> AlignedFolder:
    """Pair and align every file of ``decoded_dir`` with its reference in ``reference_dir``.

    References are resampled to ``sample_rate_hz`` and keep their channels and length; decoded files are read at
    ``decoded_sample_rate_hz`` (else the YAML's ``sample_rate_hz``, else the header), resampled, matched to the
    reference's channels and trimmed or padded to its length within ``length_tolerance``. Every problem of the
    folder is reported at once in one :class:`AudioInputError`.
    """
    length_tolerance = check_tolerance(length_tolerance)
    spec = read_folder_spec(decoded_dir)
    override, source = decoded_sample_rate_hz, override_source
    if override is None and spec.sample_rate_hz is not None:
        override, source = spec.sample_rate_hz, str(spec.spec_path)
    out = AlignedFolder(spec=spec)
    problems: list[tuple[str, str]] = []
    for stem, ref_path, dec_path in pair_files(reference_dir, decoded_dir):
        ref = load(ref_path, sample_rate_hz)
        reference, ref_record = fit(ref, ref.audio.shape[1], ref.audio.shape[0], 0.0)
        try:
            decoded, dec_record = fit(load(dec_path, sample_rate_hz, override, source), reference.shape[1],
                                      reference.shape[0], length_tolerance, reference=ref_path.name)
        except AudioInputError as error:
            problems.append((error.path, error.problem))
            continue
        out.items.append(AlignedItem(stem, reference, decoded, ref_record, dec_record))
    if problems:
        more = f" (and {len(problems) - 1} more file(s) of {decoded_dir})" if len(problems) > 1 else ""
        raise AudioInputError(problems[0][0], problems[0][1] + more)
    return out


# --------------------------------------------------------------------------------------------------------------
# The system
# --------------------------------------------------------------------------------------------------------------


def parse_item_id(item_id: str) -> tuple[str, int]:
    """``"<clip stem>#<segment index>"`` -> (stem, index); a bare stem is segment 0."""
    stem, sep, index = str(item_id).rpartition("#")
    if not sep:
        return str(item_id), 0
    if not index.isdigit():
        raise ConfigError(f"item id {item_id!r}: expected '<clip stem>#<segment index>' with an integer index")
    return stem, int(index)


class PrecomputedFolders(System):
    """Decoded outputs produced elsewhere, one folder per operating point (a "condition"): a system, not a codec
    (nothing is encoded or decoded here).

    Options: ``folder`` (a folder of decoded files, or a parent whose subfolders are the conditions),
    ``conditions`` (subfolder names to use; default all that hold audio), ``length_tolerance`` (fraction),
    ``segmented`` (items are consecutive fixed-length segments of each file; default False: one item per file),
    ``sample_rate_hz`` (override of every file's header rate; a folder's YAML may set its own).

    The operating point has one parameter, ``condition`` (the folder name). Item ``<stem>#<k>`` is read from the
    file with that stem; segment k covers evaluation-rate samples [k T, (k + 1) T) of it, T the length of the
    item given to :meth:`roundtrip`. No codes exist: each item's record is a
    :class:`~codecbench.codecs.bitstream.NoBitstream` carrying the rates the folder's YAML declares
    (``rate_source == "declared"``).
    """

    info: ClassVar[CodecInfo] = CodecInfo(
        name="precomputed",
        kind="precomputed",
        sample_rate_hz=None,
        channels=1,
        description="decoded audio produced elsewhere, read from folders (rates declared in codecbench.yaml, "
        "not measured); channels follow the evaluation format",
        source="files made by the user",
    )
    params: ClassVar[tuple[ParamSpec, ...]] = (
        ParamSpec("condition", kind=str, help="name of the folder of decoded files (see the codec's folder option)"),
    )
    default_points: ClassVar[tuple[Mapping[str, Any], ...]] = ()  # they depend on the folder option

    def __init__(
        self,
        device: str = "cpu",
        *,
        folder: str | None = None,
        conditions: Sequence[str] | None = None,
        length_tolerance: float = DEFAULT_LENGTH_TOLERANCE,
        segmented: bool = False,
        sample_rate_hz: int | None = None,
    ):
        super().__init__(device=device)
        self.length_tolerance = check_tolerance(length_tolerance)
        self.segmented = bool(segmented)
        self.sample_rate_override_hz = int(sample_rate_hz) if sample_rate_hz else None
        self.folder = Path(folder).expanduser().resolve() if folder else None
        self.specs: dict[str, FolderSpec] = {}
        if self.folder is not None:
            self.specs = self._find_conditions(self.folder, conditions)
        self._files: dict[str, dict[str, Path]] = {}

    # -- folders --------------------------------------------------------------------------------------------
    @staticmethod
    def _has_audio(folder: Path) -> bool:
        return any(p.is_file() and p.suffix.lower() in audio_ops.AUDIO_SUFFIXES for p in folder.iterdir())

    def _find_conditions(self, folder: Path, wanted: Sequence[str] | None) -> dict[str, FolderSpec]:
        if not folder.is_dir():
            raise ConfigError(f"codec 'precomputed' option folder: {folder} is not a folder")
        if self._has_audio(folder):
            found = {folder.name: folder}
        else:
            found = {p.name: p for p in sorted(folder.iterdir()) if p.is_dir() and self._has_audio(p)}
        if not found:
            raise ConfigError(f"codec 'precomputed' option folder: {folder} holds no audio files and no subfolders "
                              "with audio files")
        if wanted is not None:
            unknown = [name for name in wanted if name not in found]
            if unknown:
                raise ConfigError(f"codec 'precomputed' option conditions: {unknown[0]!r} is not a folder of "
                                  f"decoded files in {folder}; choices: {sorted(found)}")
            found = {name: found[name] for name in wanted}
        return {name: read_folder_spec(path) for name, path in found.items()}

    def condition_points(self) -> list[OperatingPoint]:
        """One operating point per condition folder (a config may list them as ``grid: {condition: [...]}``)."""
        return [self.point(condition=name) for name in self.specs]

    def spec(self, point: OperatingPoint) -> FolderSpec:
        if self.folder is None:
            raise ConfigError("codec 'precomputed' needs the option folder (a folder of decoded files, or a parent "
                              "of one folder per condition)")
        name = point.get("condition")
        if name not in self.specs:
            raise ConfigError(f"codec 'precomputed' parameter condition: {name!r} is not one of {sorted(self.specs)} "
                              f"(folders under {self.folder})")
        return self.specs[name]

    def nominal_bitrate_kbps(self, point: OperatingPoint) -> float:
        return self.spec(point).declared_rates().get("bitrate_kbps", math.nan)

    def frame_rate_hz(self, point: OperatingPoint) -> float:
        return self.spec(point).declared_rates().get("frame_rate_hz", math.nan)

    def identity(self) -> dict[str, Any]:
        """Name, version and a digest of the folders' files (name, size, modification time), so the decoded
        cache follows any change of the files."""
        digest = hashlib.sha256()
        for name, spec in sorted(self.specs.items()):
            for path in sorted(spec.folder.iterdir()):
                if path.is_file():
                    stat = path.stat()
                    digest.update(f"{name}/{path.name}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        return {**super().identity(), "folder": str(self.folder), "files": digest.hexdigest(),
                "length_tolerance": self.length_tolerance, "segmented": self.segmented,
                "sample_rate_override_hz": self.sample_rate_override_hz}

    # -- the work -------------------------------------------------------------------------------------------
    def _file(self, spec: FolderSpec, stem: str) -> Path:
        files = self._files.get(spec.condition)
        if files is None:
            files = self._files[spec.condition] = list_audio(spec.folder)
        if stem not in files:
            import difflib

            close = difflib.get_close_matches(stem, list(files), n=1)
            hint = f"; closest: {files[close[0]].name}" if close else ""
            raise AudioInputError(spec.folder, f"no decoded file named {stem!r} (with any audio suffix) for item "
                                  f"{stem}{hint}")
        return files[stem]

    def roundtrip(
        self,
        audio: torch.Tensor,
        sample_rate_hz: int,
        point: OperatingPoint,
        item_ids: Sequence[str] | None = None,
    ) -> Roundtrip:
        """Look up the decoded file of each item and align it to the item: ``audio`` [B, C, T] at
        ``sample_rate_hz`` -> decoded [B, C, T]. ``processing["items"]`` holds one :class:`AlignmentRecord`
        dict per item."""
        spec = self.spec(point)
        batch, channels, num_samples = audio.shape
        if item_ids is None or len(item_ids) != batch:
            raise ConfigError(f"codec 'precomputed' needs one item id per item ('<clip stem>#<segment>'), got "
                              f"{None if item_ids is None else len(item_ids)} for a batch of {batch}")
        override, source = self.sample_rate_override_hz, "codec option sample_rate_hz"
        if override is None and spec.sample_rate_hz is not None:
            override, source = spec.sample_rate_hz, str(spec.spec_path)
        started = time.perf_counter()
        loaded: dict[str, LoadedAudio] = {}
        decoded, records, bitstreams = [], [], []
        for item_id in item_ids:
            stem, index = parse_item_id(item_id)
            if index and not self.segmented:
                raise ConfigError(f"codec 'precomputed': item {item_id!r} is segment {index} of its clip, but the "
                                  "codec reads one item per file; set its option segmented: true")
            if stem not in loaded:
                loaded[stem] = load(self._file(spec, stem), sample_rate_hz, override, source)
            out, record = fit(loaded[stem], num_samples, channels, self.length_tolerance,
                              start_samples=index * num_samples, whole_file=not self.segmented)
            decoded.append(out)
            records.append(record.as_dict())
            bitstreams.append(NoBitstream(sample_rate_hz, num_samples, channels, rates=spec.declared_rates(),
                                          source="declared"))
        read_s = time.perf_counter() - started
        rates = {r["read_sample_rate_hz"] for r in records}
        processing = {
            "native_sample_rate_hz": rates.pop() if len(rates) == 1 else "mixed (see items)",
            "resampler": audio_ops.RESAMPLER if any(r["resampler"] != "none" for r in records) else "none",
            "channel_policy": ",".join(sorted({r["channel_policy"] for r in records})),
            "encode_s": math.nan,  # encoding and decoding happened elsewhere: not measured here
            "decode_s": math.nan,
            "read_s": read_s,
            "declared_codec": spec.codec,
            "rate_source": spec.rate_source,
            "items": records,
        }
        return Roundtrip(decoded=torch.from_numpy(np.stack(decoded)).to(audio.device), bitstreams=bitstreams,
                         processing=processing)
