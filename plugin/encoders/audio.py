"""Audio encoders: librosa statistics (no weights) and the Whisper encoder in CTranslate2 format."""

from __future__ import annotations

import math
import os

import numpy as np

from mmalign.plugin.encoders.base import Encoder
from mmalign.plugin.encoders.weights import WeightsError, resolve_local

#: Whisper's encoder emits 1500 frames per 30 s window: 50 frames a second.
WHISPER_FRAMES_PER_SECOND = 50
WHISPER_SAMPLE_RATE = 16000
WHISPER_WINDOW_FRAMES = 1500


def load_ct2_whisper(spec, device: str):
    """(ctranslate2 Whisper model, "cuda" or "cpu", its folder) for a spec whose weights are a CTranslate2
    Whisper folder or a ``pkg:`` tag. CUDA when CTranslate2 sees a GPU and the device allows it; otherwise
    ``MMALIGN_CT2_THREADS`` CPU threads (default: the cores, at most 8)."""
    try:
        import ctranslate2
    except ImportError as exc:
        raise WeightsError(f"encoder {spec.name!r} needs ctranslate2: pip install 'mmalign[offline]'") from exc
    path = resolve_local(spec.weights)
    if path is None:
        raise WeightsError(
            f"encoder {spec.name!r}: weights must be a local CTranslate2 Whisper folder or a "
            f"pkg: tag, got {spec.weights!r}"
        )
    ct2_device = "cuda" if device in ("auto", "cuda") and ctranslate2.get_cuda_device_count() > 0 else "cpu"
    threads = int(os.environ.get("MMALIGN_CT2_THREADS", 0)) or min(os.cpu_count() or 1, 8)
    try:
        model = ctranslate2.models.Whisper(
            str(path),
            device=ct2_device,
            compute_type="default" if ct2_device == "cuda" else "float32",
            intra_threads=threads,
        )
    except (RuntimeError, ValueError, OSError) as exc:
        raise WeightsError(
            f"encoder {spec.name!r}: cannot load the CTranslate2 Whisper model in {str(path)!r}: {exc}"
        ) from exc
    return model, ct2_device, path


def whisper_feature_extractor(n_mels: int):
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=n_mels, sampling_rate=WHISPER_SAMPLE_RATE)


class LibrosaAudioEncoder(Encoder):
    """Mean and std over time of log-mel bands and MFCCs."""

    def _encode_batch(self, batch):
        import librosa

        spec = self.spec
        rows = []
        for wave in batch:
            wave = np.asarray(wave, dtype=np.float32)
            mel = librosa.feature.melspectrogram(
                y=wave, sr=spec.sample_rate, n_fft=spec.n_fft, hop_length=spec.hop_length, n_mels=spec.n_mels
            )
            log_mel = librosa.power_to_db(mel, ref=1.0, top_db=None)
            parts = [log_mel]
            if spec.n_mfcc:
                parts.append(librosa.feature.mfcc(S=log_mel, n_mfcc=spec.n_mfcc))
            features = np.concatenate(parts, axis=0)
            rows.append(np.concatenate([features.mean(axis=1), features.std(axis=1)]))
        return np.stack(rows)


class WhisperCT2AudioEncoder(Encoder):
    """Whisper encoder states pooled over the frames that cover the clip (the padding is ignored).

    Every clip is padded to Whisper's 30 s window, so encoding costs the same for a 1 s sound
    as for a 30 s one: this is what the feature cache is for.
    """

    def __init__(self, spec, device: str = "auto"):
        super().__init__(spec, device)
        self.model, self.device, self.path = load_ct2_whisper(spec, device)
        self.features = whisper_feature_extractor(spec.n_mels)

    def _encode_batch(self, batch):
        import ctranslate2

        waves = [np.asarray(w, dtype=np.float32)[: int(self.spec.max_seconds * WHISPER_SAMPLE_RATE)] for w in batch]
        mel = self.features(waves, sampling_rate=WHISPER_SAMPLE_RATE, return_tensors="np").input_features
        states = np.asarray(
            self.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(mel, dtype=np.float32)))
        )
        if states.shape[-1] != self.spec.width:
            raise WeightsError(
                f"encoder {self.spec.name!r}: model width is {states.shape[-1]}, spec says {self.spec.width}"
            )
        rows = []
        for wave, frames in zip(waves, states):
            valid = math.ceil(len(wave) / WHISPER_SAMPLE_RATE * WHISPER_FRAMES_PER_SECOND)
            used = frames[: max(1, min(valid, WHISPER_WINDOW_FRAMES))]
            pooled = [used.mean(axis=0)]
            if self.spec.pooling == "mean_std":
                pooled.append(used.std(axis=0))
            rows.append(np.concatenate(pooled))
        return np.stack(rows)
