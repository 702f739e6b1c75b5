"""What was said: Whisper transcribes the clip, a text encoder embeds the transcript.

A spoken query ("a red fire truck", said into a phone) then lands where the text "a red fire truck" lands,
which is where most of the catalog's signal is. The transcript is kept as the clip's annotation
(``{"transcript": ..., "speech_probability": ...}``): the feature cache stores it next to the features,
ingest writes it to the payload (``heard``) and search reports it for an audio query.

Decoding is greedy and short (``max_new_tokens``), with no repeated n-grams. The English-only models
take no language or task token (their prompt is ``<|startoftranscript|><|notimestamps|>``); a multilingual
model is told ``<|en|><|transcribe|>``. A short clip is preceded by ``lead_seconds`` of silence (Whisper
tiny hallucinates far less then) and, with ``window="clip"``, the encoder sees a window that covers the
clip, rounded up to ``window_step_seconds``, instead of the padded 30 s: Whisper's encoder cost grows with
the window, and the transcripts of short clips are as good (docs/audio.md has the measurements).

A clip Whisper deems silent (no-speech probability above ``no_speech_threshold`` and mean token
log-probability below ``logprob_threshold``: Whisper's own rule), or whose transcript is empty, has an
empty transcript (not an error) and a zero text part; its speech probability is still reported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mmalign.plugin.encoders.audio import WHISPER_FRAMES_PER_SECOND as STATE_FRAMES_PER_SECOND
from mmalign.plugin.encoders.audio import WHISPER_SAMPLE_RATE, load_ct2_whisper, whisper_feature_extractor
from mmalign.plugin.encoders.base import Encoder
from mmalign.plugin.encoders.weights import WeightsError

#: Mel frames per second (hop 160 at 16 kHz) and in Whisper's full window.
MEL_FRAMES_PER_SECOND = 100
FULL_WINDOW_FRAMES = 3000


@dataclass(frozen=True)
class Transcript:
    text: str  # "" when the clip is deemed silent
    no_speech_prob: float
    avg_logprob: float
    raw: str  # what the decoder produced, before the silence rule

    @property
    def speech_probability(self) -> float:
        return 1.0 - self.no_speech_prob

    def annotation(self) -> dict:
        return {"transcript": self.text, "speech_probability": round(float(self.speech_probability), 4)}


class WhisperTranscriptEncoder(Encoder):
    annotates = True

    @property
    def transcriber(self) -> WhisperTranscriptEncoder:
        """The part that transcribes (itself; a concatenation names its transcribing part)."""
        return self

    def __init__(self, spec, device: str = "auto"):
        super().__init__(spec, device)
        from mmalign.plugin.encoders import build_encoder

        self.model, self.device, path = load_ct2_whisper(spec, device)
        self.features = whisper_feature_extractor(spec.n_mels)
        tokenizer_file = path / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise WeightsError(f"encoder {spec.name!r}: {str(path)!r} has no tokenizer.json to decode transcripts")
        import tokenizers

        self.tokenizer = tokenizers.Tokenizer.from_file(str(tokenizer_file))
        prompt = ["<|startoftranscript|>"]
        if self.model.is_multilingual:
            prompt += ["<|en|>", "<|transcribe|>"]
        self.prompt = [*prompt, "<|notimestamps|>"]
        missing = [t for t in self.prompt if self.tokenizer.token_to_id(t) is None]
        if missing:
            raise WeightsError(f"encoder {spec.name!r}: the tokenizer lacks {missing}; is it a Whisper model?")
        self.text_encoder = build_encoder(spec.text_encoder, device=device)
        if self.text_encoder.dim != spec.text_encoder.dim:
            raise WeightsError(f"encoder {spec.name!r}: text encoder gives {self.text_encoder.dim}-d vectors")

    def _window_frames(self, samples: int) -> int:
        if self.spec.window == "full":
            return FULL_WINDOW_FRAMES
        seconds = samples / WHISPER_SAMPLE_RATE + 0.25  # a little room after the clip
        step = self.spec.window_step_seconds
        return min(FULL_WINDOW_FRAMES, int(math.ceil(seconds / step) * step * MEL_FRAMES_PER_SECOND))

    def prepare(self, wave) -> np.ndarray:
        """Mono 16 kHz float32, cut to ``max_seconds`` after ``lead_seconds`` of silence are put before it."""
        wave = np.asarray(wave, dtype=np.float32).reshape(-1)
        lead = np.zeros(int(self.spec.lead_seconds * WHISPER_SAMPLE_RATE), dtype=np.float32)
        return np.concatenate([lead, wave])[: int(self.spec.max_seconds * WHISPER_SAMPLE_RATE)]

    def transcribe(self, batch) -> list[Transcript]:
        """Greedy transcripts of a batch of 16 kHz clips (grouped by window length)."""
        return self._transcribe(batch)[0]

    def _transcribe(self, batch) -> tuple[list[Transcript], np.ndarray]:
        """The transcripts, and (with ``state_width``) the encoder states averaged over each clip's frames,
        L2-normalised, from the same encoder pass ((n, 0) without)."""
        import ctranslate2

        waves = [self.prepare(w) for w in batch]
        out: list[Transcript | None] = [None] * len(waves)
        states = np.zeros((len(waves), self.spec.state_width), dtype=np.float32)
        groups: dict[int, list[int]] = {}
        for i, wave in enumerate(waves):
            groups.setdefault(self._window_frames(len(wave)), []).append(i)
        for frames, index in sorted(groups.items()):
            mel = self.features(
                [waves[i] for i in index], sampling_rate=WHISPER_SAMPLE_RATE, return_tensors="np"
            ).input_features[:, :, :frames]
            encoded = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel, dtype=np.float32))
            if self.spec.state_width:  # one encoder pass: its states are pooled, and the decoder reads them
                encoded = self.model.encode(encoded, to_cpu=True)
                states[index] = self._pool_states(np.asarray(encoded), [waves[i] for i in index])
            results = self.model.generate(
                encoded,
                [self.prompt] * len(index),
                beam_size=1,
                max_length=self.spec.max_new_tokens,
                no_repeat_ngram_size=self.spec.no_repeat_ngram_size,
                return_scores=True,
                return_no_speech_prob=True,
            )
            for i, result in zip(index, results):
                raw = self.tokenizer.decode(result.sequences_ids[0], skip_special_tokens=True).strip()
                no_speech = float(result.no_speech_prob)
                logprob = float(result.scores[0]) if result.scores else 0.0
                silent = no_speech > self.spec.no_speech_threshold and logprob < self.spec.logprob_threshold
                out[i] = Transcript("" if silent else raw, no_speech, logprob, raw)
        return out, states

    def hypotheses(
        self, batch, *, beam_size: int = 5, num_hypotheses: int = 5, prompt: str | None = None
    ) -> list[list[tuple[str, float]]]:
        """The ``num_hypotheses`` best transcripts of each clip by beam search, each with its mean token
        log-probability, best first (a spoken query's n-best list). ``prompt``: text that Whisper reads as
        the previous passage (``<|startofprev|>``), which biases it towards those words (e.g. a catalog's
        frequent terms)."""
        import ctranslate2

        start = list(self.prompt)
        if prompt:
            previous = self.tokenizer.encode(" " + prompt.strip(), add_special_tokens=False).tokens[-200:]
            start = ["<|startofprev|>", *previous, *start]
        waves = [self.prepare(w) for w in batch]
        out: list[list[tuple[str, float]]] = [[] for _ in waves]
        groups: dict[int, list[int]] = {}
        for i, wave in enumerate(waves):
            groups.setdefault(self._window_frames(len(wave)), []).append(i)
        for frames, index in sorted(groups.items()):
            mel = self.features(
                [waves[i] for i in index], sampling_rate=WHISPER_SAMPLE_RATE, return_tensors="np"
            ).input_features[:, :, :frames]
            results = self.model.generate(
                ctranslate2.StorageView.from_array(np.ascontiguousarray(mel, dtype=np.float32)),
                [start] * len(index),
                beam_size=max(beam_size, num_hypotheses),
                num_hypotheses=num_hypotheses,
                max_length=self.spec.max_new_tokens,
                no_repeat_ngram_size=self.spec.no_repeat_ngram_size,
                return_scores=True,
                length_penalty=1.0,
            )
            for i, result in zip(index, results):
                texts = [self.tokenizer.decode(ids, skip_special_tokens=True).strip() for ids in result.sequences_ids]
                out[i] = [(t, float(s)) for t, s in zip(texts, result.scores)]
        return out

    def _pool_states(self, states: np.ndarray, waves: list[np.ndarray]) -> np.ndarray:
        """Mean of each clip's encoder states over the frames of the clip itself (not the silence put
        before it, nor the padding after), L2-normalised: (n, state_width)."""
        if states.shape[-1] != self.spec.state_width:
            raise WeightsError(
                f"encoder {self.spec.name!r}: model width is {states.shape[-1]}, spec says {self.spec.state_width}"
            )
        lead = int(self.spec.lead_seconds * STATE_FRAMES_PER_SECOND)
        pooled = np.zeros((len(waves), states.shape[-1]), dtype=np.float32)
        for n, (row, wave) in enumerate(zip(states, waves)):
            end = min(len(row), max(lead + 1, math.ceil(len(wave) / WHISPER_SAMPLE_RATE * STATE_FRAMES_PER_SECOND)))
            mean = row[min(lead, end - 1) : end].mean(axis=0)
            pooled[n] = mean / max(float(np.linalg.norm(mean)), 1e-12)
        return pooled

    def text_log_likelihoods(self, wave, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """Mean log-probability per token of each text as the transcript of ``wave`` (Whisper forced to read
        it: CTranslate2's alignment pass). Greedy decoding of a hard clip can go wrong where the right
        text, read out, is still far likelier than the others: a second stage for spoken queries."""
        import ctranslate2

        if not texts:
            return np.zeros(0, dtype=np.float32)
        prepared = self.prepare(wave)
        frames = self._window_frames(len(prepared))
        mel = self.features([prepared], sampling_rate=WHISPER_SAMPLE_RATE, return_tensors="np").input_features
        states = np.asarray(
            self.model.encode(
                ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[:, :, :frames], dtype=np.float32)),
                to_cpu=True,
            )
        )
        start = [self.tokenizer.token_to_id(t) for t in self.prompt]
        out = np.full(len(texts), -np.inf, dtype=np.float32)
        tokens = [
            self.tokenizer.encode(" " + t.strip(), add_special_tokens=False).ids[: self.spec.max_new_tokens]
            for t in texts
        ]
        for begin in range(0, len(texts), batch_size):
            chunk = [(i, t) for i, t in enumerate(tokens[begin : begin + batch_size], begin) if t]
            if not chunk:
                continue
            repeated = np.ascontiguousarray(np.repeat(states, len(chunk), axis=0))
            results = self.model.align(
                ctranslate2.StorageView.from_array(repeated), start, [t for _, t in chunk], frames
            )
            for (i, _), result in zip(chunk, results):
                probs = np.asarray(result.text_token_probs, dtype=np.float64)
                out[i] = float(np.mean(np.log(np.maximum(probs, 1e-12)))) if probs.size else -np.inf
        return out

    def _encode_batch_annotated(self, batch):
        transcripts, states = self._transcribe(batch)
        text_dim = self.spec.text_encoder.dim
        rows = np.zeros((len(batch), self.dim), dtype=np.float32)
        spoken = [i for i, t in enumerate(transcripts) if t.text]
        if spoken:
            rows[spoken, :text_dim] = self.text_encoder.encode([transcripts[i].text for i in spoken])
        if self.spec.speech_feature:
            rows[:, text_dim] = [t.speech_probability for t in transcripts]
        if self.spec.state_width:
            rows[:, self.dim - self.spec.state_width :] = states
        return rows, [t.annotation() for t in transcripts]

    def _encode_batch(self, batch):
        return self._encode_batch_annotated(batch)[0]
