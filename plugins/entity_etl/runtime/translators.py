"""Pluggable translators for the translate stage.

* :class:`AmazonTranslator`: Amazon Translate (production). ``TranslateText`` takes one text per call,
  so "batched" here means each batch of distinct values is translated concurrently on a small thread
  pool; the stage's cache table makes each distinct value cost one call, ever.
* :class:`GlossaryTranslator`: an offline dictionary (``include/translate/glossary.yaml``) for the
  embedded default. It is labelled as such in the stage statistics; it is not machine translation,
  and values it does not know pass through unchanged (and are counted).
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from entity_etl.runtime.settings import include_dir


class TranslationError(RuntimeError):
    pass


class Translator(ABC):
    label: str

    @abstractmethod
    def translate_batch(self, texts: Sequence[str], source: str, target: str) -> list[str | None]:
        """Translate ``texts``; ``None`` where a value could not be translated (kept as is)."""


class GlossaryTranslator(Translator):
    label = "offline glossary (not machine translation)"

    def __init__(self, glossary: dict[str, dict[str, str]]) -> None:
        self.glossary = glossary

    @classmethod
    def from_file(cls, path: Path) -> GlossaryTranslator:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else {}
        if not isinstance(data, dict):
            raise TranslationError(f"{path}: a glossary maps language -> {{source text: English text}}")
        return cls({str(lang): {str(k): str(v) for k, v in (terms or {}).items()} for lang, terms in data.items()})

    def translate_batch(self, texts: Sequence[str], source: str, target: str) -> list[str | None]:
        terms = self.glossary.get(source, {})
        return [terms.get(t) for t in texts]


class AmazonTranslator(Translator):
    label = "Amazon Translate"
    max_bytes = 10_000  # TranslateText's documented per-request limit

    def __init__(self, client: Any = None, workers: int = 8, max_attempts: int = 5) -> None:
        if client is None:
            import boto3

            client = boto3.client("translate")
        self.client = client
        self.workers = workers
        self.max_attempts = max_attempts

    def _one(self, text: str, source: str, target: str) -> str | None:
        if not text.strip():
            return text
        if len(text.encode("utf-8")) > self.max_bytes:
            return None  # too long for TranslateText: keep the original, counted as untranslated
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self.client.translate_text(Text=text, SourceLanguageCode=source, TargetLanguageCode=target)
                return str(response["TranslatedText"])
            except self.client.exceptions.TooManyRequestsException:
                if attempt == self.max_attempts:
                    raise TranslationError("Amazon Translate kept throttling") from None
                time.sleep(min(2**attempt * 0.1, 5))
        return None

    def translate_batch(self, texts: Sequence[str], source: str, target: str) -> list[str | None]:
        if self.workers <= 1 or len(texts) <= 1:
            return [self._one(t, source, target) for t in texts]
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(lambda t: self._one(t, source, target), texts))


def default_glossary_path() -> Path:
    return Path(os.environ.get("ETL_GLOSSARY", include_dir() / "translate" / "glossary.yaml"))


def open_translator(kind: str | None = None) -> Translator:
    kind = kind or os.environ.get("ETL_TRANSLATOR", "glossary")
    if kind == "amazon":
        return AmazonTranslator()
    if kind == "glossary":
        return GlossaryTranslator.from_file(default_glossary_path())
    raise TranslationError(f"unknown translator {kind!r}: use 'amazon' or 'glossary' (ETL_TRANSLATOR)")
