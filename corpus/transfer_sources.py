"""Rebuild the transfer pool ``transfer_texts.csv`` from its public sources at pinned commits.

``python -m corpus.transfer_text fetch --out DIR`` downloads the files named in ``SOURCES`` (four GitHub
repositories, each at one commit), cleans them as ``../shared/data/transfer/README.md`` describes
(steps 1-6: Telegram cleaning and chunking, URL and whitespace clean-up, drops, de-duplication, removal of
texts found in the reference files) and writes ``DIR/transfer_texts.csv`` (``source,text``, rows grouped by
source in ``SOURCES`` order) plus ``DIR/sources.lock.json`` (URL, bytes and sha256 of every file seen, the
counts of every step, the final digest). The final file's sha256 is compared with the published one: a
mismatch keeps the file but warns that runs made with it are not comparable to the documented ones.

The cleaning functions are pure (text in, text out) and tested on their own; ``fetch`` takes the
manifest as a parameter so tests can serve a small mirror with the same ``{repo}/{commit}/{path}`` layout.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import re
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from inference.atomic import atomic_file, write_json

from .cache import cache_root
from .rusentiment import FILES as RUSENTIMENT_FILES, resolve_data_dir, sha256_bytes
from .splits import DataError

log = logging.getLogger(__name__)

FILE_NAME = "transfer_texts.csv"
LOCK_NAME = "sources.lock.json"
# the published pool (../shared/data/transfer/README.md)
EXPECTED_SHA256 = "7525a5a72a29536184ee7a0a85565be58b49ca1d84f3ce24700f2533d93f7586"
EXPECTED_BYTES = 24_252_290
DEFAULT_MIRROR = "https://raw.githubusercontent.com"
TIMEOUT_S = 60.0

MAX_CHUNK = 300         # Telegram chunks: at most this many characters
MIN_CHUNK = 15          # Telegram chunks shorter than this are dropped
BOILERPLATE_POSTS = 20  # a line found in this many Telegram posts or more is channel boilerplate
MIN_CYRILLIC = 3


@dataclass(frozen=True)
class SourceFile:
    path: str                   # inside the repository
    sha256: str | None = None   # pinned digest; None until someone has seen the file (see sources.lock.json)


@dataclass(frozen=True)
class Source:
    name: str                   # the ``source`` column
    repo: str                   # GitHub owner/name
    commit: str
    files: tuple[SourceFile, ...]
    reader: str                 # "json": a JSON list of objects with a ``text`` field; "csv": the ``text`` column
    licence: str                # as the transfer README states it
    telegram_cleaning: bool = False

    def url(self, path: str, mirror: str | None = None) -> str:
        return f"{(mirror or DEFAULT_MIRROR).rstrip('/')}/{self.repo}/{self.commit}/{path}"


def _files(*paths: str) -> tuple[SourceFile, ...]:
    return tuple(SourceFile(p) for p in paths)


TELEGRAM_CHANNELS = (
    "1001000724666", "1001003313758", "1001003921752", "1001032086354", "1001039626561", "1001044298783",
    "1001100158992", "1001101170442", "1001117628569", "1001125816841", "1001136626166", "1001138587070",
    "1001166834860", "1001237513492", "1001259695380", "1001288481277", "1001288489154", "1001326203371",
    "1001394050290", "1001465826763", "1001699803165", "1001747110091", "1001754252633", "1001966291562",
)

SOURCES: tuple[Source, ...] = (
    Source("telegram_news", "NKTKLN/telegram-news-classifier", "b8b03f1982910fbf4151c184f1ade8b67aa1f585",
           _files(*(f"data/raw/{c}_messages.json" for c in TELEGRAM_CHANNELS)), "json",
           "CC BY 4.0 as stated by the dataset's data/README.md (attribution: NKTKLN, Telegram News Classifier "
           "dataset; code MIT); the posts were written by third-party channels (RIA Novosti, BBC Russian, Mash, "
           "Habr, ...) and that licence cannot give more rights than the repository author holds in them",
           telegram_cleaning=True),
    Source("snlp_sensitive_topics", "s-nlp/inappropriate-sensitive-topics", "c298b0ef3277ad4112e8af79b3f600821824ee68",
           _files("Version1/appropriateness/test.csv", "Version1/appropriateness/val.csv",
                  "Version1/sensitive_topics/Sensitive_topics_crowdsource_only.csv",
                  "Version1/sensitive_topics/test.csv", "Version1/sensitive_topics/val.csv",
                  "Version2/appropriateness/manual_labelled.csv", "Version2/sensitive_topics/test.csv",
                  "Version2/sensitive_topics/val.csv"), "csv",
           "CC BY-NC-SA 4.0: non-commercial use only, attribution, share-alike for anything that adapts or "
           "contains these texts; cite Babakov, Logacheva and Panchenko (2024) and Babakov et al. (2021)"),
    Source("llm_synthetic_vk", "privet1mir/rusentiment-synthetic-study", "76989e8d64ac385c13cf2101dd635175fd97ed86",
           _files(*(f"data_synthetic/synthetic_{n}.csv" for n in (
               "base_5k", "decoding_params_1_5k", "few_shot_1_5k", "latent_taxonomy_1_5k", "latent_taxonomy_2_5k",
               "latent_taxonomy_5k", "raw_1_5k", "taxonomy_based_1_5k"))), "csv",
           "MIT (Copyright (c) 2026 Ivan); the texts were generated through the OpenAI API, whose terms of use "
           "may also apply to them"),
    Source("cedr", "searayeah/russian-sentiment-emotion-datasets", "b43a50a589e6664837f994ef72d0f75c4bd6fbcd",
           _files("CEDR/cedr-enriched-test.csv", "CEDR/cedr-main-test.csv", "CEDR/cedr-main-train.csv"), "csv",
           "unclear: the repository states no licence for itself or for CEDR (the Hugging Face dataset card "
           "of cedr declares Apache-2.0); cite Sboev, Naumov and Rybka (2021)"),
)

# ---------------------------------------------------------------------------------------------- cleaning

# [text](url) -> text. Not across a line break and not around nested brackets: the published pool keeps
# such links unconverted ("[Reliability Lead [ЦП SRE]](", "[Специалист ... ](" where the source has
# "[text\n](url)"), so the original regex evidently was of this kind (our reading).
LINK_RE = re.compile(r"\[([^\]\n]*)\]\(([^)\s]*)\)")
FENCE_RE = re.compile(r"```.*?```", re.S)
# http(s)://..., www...., t.me/..., bit.ly/... (step 3's list). The bare-domain forms need a word
# boundary: in the published pool "____bit.ly/bbcrussian__" and "__t.me/moscowmap?boost__" survive Telegram
# cleaning while "____https://bbc.in/..." does not (our reading of those rows).
URL_RE = re.compile(r"(?:https?://|\bwww\.|\bt\.me/|\bbit\.ly/)\S+")
MARKUP = ("**", "__", "~~", "||", "`")
HASHTAG_LINE_RE = re.compile(r"(?:#\w+\s*)+")
SENTENCE_END_RE = re.compile(r"(?<=[.!?…])\s+")
WS_RE = re.compile(r"\s+")
# "Cyrillic letters" read as the Russian alphabet (our reading; Ukrainian-only letters do not count)
CYRILLIC_RE = re.compile(r"[А-Яа-яЁё]")


def collapse(text: str) -> str:
    """Every run of whitespace (newlines included) -> one space, stripped."""
    return WS_RE.sub(" ", text).strip()


def normalise(text: str) -> str:
    """The de-duplication key: lowercase, collapsed whitespace, stripped."""
    return collapse(text.lower())


def remove_urls(text: str) -> str:
    return URL_RE.sub("", text)


def telegram_lines(text: str) -> list[str]:
    """Step 2 up to the line level: links -> their text, fenced code removed, URLs removed, then the markup
    ``** __ ~~ ||`` and backticks removed (in that order: URLs first, so a URL broken by markup, such as
    ``**https**://...``, survives, as it does in the published pool); non-empty stripped lines."""
    text = LINK_RE.sub(r"\1", text)
    text = FENCE_RE.sub("", text)
    text = remove_urls(text)
    for mark in MARKUP:
        text = text.replace(mark, "")
    return [line.strip() for line in text.splitlines() if line.strip()]


def boilerplate_lines(posts: Iterable[Sequence[str]], min_posts: int = BOILERPLATE_POSTS) -> set[str]:
    """Lines found in ``min_posts`` or more posts (each post counted once per line)."""
    counts = Counter(line for lines in posts for line in set(lines))
    return {line for line, n in counts.items() if n >= min_posts}


def is_hashtag_line(line: str) -> bool:
    return HASHTAG_LINE_RE.fullmatch(line.strip()) is not None


def split_sentences(line: str) -> list[str]:
    """Split after ``. ! ? …`` followed by whitespace; each sentence whitespace-collapsed."""
    return [s for s in (collapse(p) for p in SENTENCE_END_RE.split(line)) if s]


def cut_long(sentence: str, max_chars: int = MAX_CHUNK) -> list[str]:
    """A sentence longer than ``max_chars`` cut at the last space that keeps each piece within it."""
    pieces = []
    while len(sentence) > max_chars:
        cut = sentence.rfind(" ", 0, max_chars + 1)
        if cut <= 0:  # no space to cut at: a hard cut (the README does not say; our reading)
            cut = max_chars
        pieces.append(sentence[:cut].rstrip())
        sentence = sentence[cut:].lstrip()
    if sentence:
        pieces.append(sentence)
    return pieces


def pack_chunks(sentences: Sequence[str], max_chars: int = MAX_CHUNK) -> list[str]:
    """Greedy packing: sentences (longer ones first cut into pieces) joined by one space while the chunk
    stays within ``max_chars``. A post whose sentences fit in ``max_chars`` comes out whole."""
    chunks: list[str] = []
    current = ""
    for piece in (p for s in sentences for p in cut_long(s, max_chars)):
        if not current:
            current = piece
        elif len(current) + 1 + len(piece) <= max_chars:
            current = f"{current} {piece}"
        else:
            chunks.append(current)
            current = piece
    if current:
        chunks.append(current)
    return chunks


def chunk_post(lines: Sequence[str], max_chars: int = MAX_CHUNK) -> list[str]:
    """One post's kept lines -> chunks (sentences split inside each line; a line break ends a sentence)."""
    return pack_chunks([s for line in lines for s in split_sentences(line)], max_chars)


def clean_telegram(posts: Iterable[str], min_posts: int = BOILERPLATE_POSTS, max_chars: int = MAX_CHUNK,
                   min_chars: int = MIN_CHUNK) -> tuple[list[str], dict]:
    """Step 2 for all Telegram posts together (boilerplate is counted over all of them): chunks in post
    order, and the counts the README reports."""
    per_post = [telegram_lines(p) for p in posts]
    boiler = boilerplate_lines(per_post, min_posts)
    chunks: list[str] = []
    stats = Counter(posts=len(per_post), boilerplate_distinct=len(boiler))
    for lines in per_post:
        kept = []
        for line in lines:
            if line in boiler:
                stats["boilerplate_occurrences"] += 1
            elif is_hashtag_line(line):
                stats["hashtag_lines"] += 1
            else:
                kept.append(line)
        for chunk in chunk_post(kept, max_chars):
            stats["chunks"] += 1
            if len(chunk) < min_chars:
                stats["chunks_too_short"] += 1
            else:
                chunks.append(chunk)
    return chunks, dict(stats)


def clean_text(text: str, telegram: bool) -> str:
    """Step 3: URLs removed and whitespace collapsed. Telegram chunks only get the collapse: their URLs
    went in step 2, before the markup was removed, and the published pool keeps the bare ``t.me/``,
    ``bit.ly/`` and ``https://`` that markup had hidden there (our reading of "all sources")."""
    return collapse(text if telegram else remove_urls(text))


def drop_reason(text: str) -> str | None:
    """Step 4: why a cleaned text is dropped (``empty``, ``replacement_char``, ``few_cyrillic``) or None."""
    if not text:
        return "empty"
    if "\ufffd" in text:
        return "replacement_char"
    if len(CYRILLIC_RE.findall(text)) < MIN_CYRILLIC:
        return "few_cyrillic"
    return None


def reference_keys(texts: Iterable[str]) -> set[str]:
    """Step 6's keys for reference texts: normalised as given and with their URLs removed."""
    keys = set()
    for t in texts:
        keys.add(normalise(t))
        keys.add(normalise(remove_urls(t)))
    keys.discard("")
    return keys


def build_pool(texts_by_source: Sequence[tuple[Source, list[str]]],
               references: Sequence[tuple[str, list[str]]] = ()) -> tuple[list[tuple[str, str]], dict]:
    """Steps 3-6 over all sources in order: ``(source, text)`` rows and per-source counts. The Telegram
    texts given here are already chunked (step 2)."""
    ref_first: dict[str, str] = {}
    for name, texts in references:
        for key in reference_keys(texts):
            ref_first.setdefault(key, name)
    seen: set[str] = set()
    rows: list[tuple[str, str]] = []
    counts: dict[str, dict] = {}
    ref_removed: Counter = Counter()
    for source, texts in texts_by_source:
        c = counts.setdefault(source.name, Counter(texts_in=0, empty=0, replacement_char=0, few_cyrillic=0,
                                                   duplicates=0, reference=0, kept=0))
        for raw in texts:
            c["texts_in"] += 1
            text = clean_text(raw, source.telegram_cleaning)
            reason = drop_reason(text)
            if reason:
                c[reason] += 1
                continue
            key = normalise(text)
            if key in seen:
                c["duplicates"] += 1
                continue
            seen.add(key)
            if key in ref_first:
                c["reference"] += 1
                ref_removed[ref_first[key]] += 1
                continue
            c["kept"] += 1
            rows.append((source.name, text))
    return rows, {"sources": {k: dict(v) for k, v in counts.items()}, "reference_removed": dict(ref_removed)}


# ---------------------------------------------------------------------------------------------- reading

def read_texts(data: bytes, source: Source, url: str) -> list[str]:
    """The texts of one downloaded file (step 1: text only)."""
    try:
        if source.reader == "json":
            items = json.loads(data.decode("utf-8-sig"))
            if not isinstance(items, list):
                raise ValueError(f"expected a JSON list of messages, got {type(items).__name__}")
            return [m["text"] for m in items if isinstance(m, dict) and isinstance(m.get("text"), str)]
        csv.field_size_limit(max(csv.field_size_limit(), 1 << 26))  # CEDR's token columns are long
        reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""))
        if "text" not in (reader.fieldnames or []):
            raise ValueError(f"no 'text' column (found {reader.fieldnames})")
        return [row["text"] or "" for row in reader]
    except (ValueError, csv.Error) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise DataError(f"{url}: cannot read it as {source.reader.upper()} ({_one_line(e)}); the file at the "
                        f"pinned commit is not what the manifest expects: check the URL, or the --mirror") from e


def read_reference(path: Path) -> list[str]:
    """The ``text`` column of a reference CSV (RuSentiment / RuSentiTweet layout: ``label,text``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: reference file not found; pass --reference FILE for each CSV (with a 'text' "
                        f"column) whose texts must not enter the pool")
    try:
        reader = csv.DictReader(io.StringIO(path.read_bytes().decode("utf-8-sig"), newline=""))
        if "text" not in (reader.fieldnames or []):
            raise ValueError(f"no 'text' column (found {reader.fieldnames})")
        return [row["text"] or "" for row in reader]
    except (ValueError, csv.Error) as e:
        raise DataError(f"{path}: not a readable reference CSV ({_one_line(e)}); expected a UTF-8 CSV with a "
                        f"'text' column") from e


def default_references() -> list[Path]:
    """RuSentiment's CSVs (``$RUSENTIMENT_DATA_DIR``, else the downloaded cache) and the RuSentiTweet CSVs
    beside them when present; none, with a warning, when there is no RuSentiment data here."""
    try:
        root: Path | None = resolve_data_dir(None, allow_download=False)
    except DataError:
        root = cache_root() / "data"  # where corpus.rusentiment.download() puts RuSentiment
    refs = [root / name for name, _ in RUSENTIMENT_FILES.values() if (root / name).is_file()]
    if not refs:
        log.warning("no RuSentiment data found (set RUSENTIMENT_DATA_DIR or pass --reference FILE): texts "
                    "equal to a RuSentiment post are not removed from the pool (README step 6)")
        return []
    tweets = root.parent / "rusentitweet"
    if tweets.is_dir():
        refs += sorted(tweets.glob("*.csv"))
    return refs


# ---------------------------------------------------------------------------------------------- fetching

@dataclass(frozen=True)
class FetchResult:
    path: Path
    lock: Path
    sha256: str
    bytes: int
    matches: bool | None            # None: no expected digest given
    counts: dict = field(default_factory=dict)


def _one_line(e: object) -> str:
    return " ".join(str(e).split())


def download_bytes(url: str, timeout: float = TIMEOUT_S) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.read()
    except urllib.error.HTTPError as e:
        raise DataError(f"could not download {url} (HTTP {e.code} {_one_line(e.reason)}); check the URL in a "
                        f"browser, or pass --mirror URL serving the same <repo>/<commit>/<path> layout") from e
    except (OSError, ValueError) as e:
        raise DataError(f"could not download {url} ({_one_line(e)}); check the network (urllib honours "
                        f"HTTPS_PROXY), or pass --mirror URL serving the same <repo>/<commit>/<path> layout") from e


def _get(source: Source, sf: SourceFile, mirror: str | None, store: Path, timeout: float) -> tuple[str, bytes, bool]:
    """One file: from ``store`` when downloaded before (and still matching its pinned digest), else
    downloaded, checked against its pinned digest and stored atomically. Returns url, bytes, cached."""
    url = source.url(sf.path, mirror)
    target = store / source.repo / source.commit / sf.path
    if target.is_file():
        data = target.read_bytes()
        if sf.sha256 is None or sha256_bytes(data) == sf.sha256:
            return url, data, True
    data = download_bytes(url, timeout)
    digest = sha256_bytes(data)
    if sf.sha256 is not None and digest != sf.sha256:
        raise DataError(f"{url}: sha256 {digest} != pinned {sf.sha256}; the mirror serves another file than the "
                        f"pinned commit holds; not used (use the default mirror, or fix the pinned digest)")
    with atomic_file(target) as tmp:
        tmp.write_bytes(data)
    return url, data, False


def fetch(out_dir: str | Path | None = None, manifest: Sequence[Source] = SOURCES, mirror: str | None = None,
          references: Sequence[str | Path] | None = None, expected_sha256: str | None = EXPECTED_SHA256,
          timeout: float = TIMEOUT_S) -> FetchResult:
    """Download ``manifest``'s files (kept under ``out_dir/sources``), build ``out_dir/transfer_texts.csv``
    and ``out_dir/sources.lock.json``, and compare the result's sha256 with ``expected_sha256``.
    ``references``: CSVs whose texts must not enter the pool (None: ``default_references()``)."""
    out_dir = Path(out_dir) if out_dir is not None else cache_root() / "transfer"
    store = out_dir / "sources"
    lock_path = out_dir / LOCK_NAME
    n_files = sum(len(s.files) for s in manifest)
    log.info("transfer pool: downloading %d files from %d sources into %s (%s)", n_files, len(manifest), store,
             "; ".join(f"{s.name}: {len(s.files)} from github.com/{s.repo} at {s.commit[:12]}" for s in manifest))
    for s in manifest:
        log.info("licence of %s: %s", s.name, s.licence)
    ref_paths = default_references() if references is None else [Path(p) for p in references]
    ref_texts = [(p.name, read_reference(p)) for p in ref_paths]
    log.info("reference files (step 6): %s", ", ".join(str(p) for p in ref_paths) or "none")

    seen: list[dict] = []
    texts_by_source: list[tuple[Source, list[str]]] = []
    i = 0
    try:
        for source in manifest:
            texts: list[str] = []
            for sf in sorted(source.files, key=lambda f: f.path):  # source-file order = sorted names
                i += 1
                url, data, cached = _get(source, sf, mirror, store, timeout)
                digest = sha256_bytes(data)
                seen.append({"source": source.name, "repo": source.repo, "commit": source.commit, "path": sf.path,
                             "url": url, "bytes": len(data), "sha256": digest})
                log.info("[%d/%d] %s %s (%d bytes, sha256 %s)", i, n_files, "kept" if cached else "downloaded",
                         url, len(data), digest[:12])
                texts += read_texts(data, source, url)
            texts_by_source.append((source, texts))
    except DataError as e:
        write_json(lock_path, {"complete": False, "error": str(e), "files": seen})
        raise

    telegram_stats = {}
    chunked = []
    for source, texts in texts_by_source:
        if source.telegram_cleaning:
            texts, stats = clean_telegram(texts)
            telegram_stats[source.name] = stats
            log.info("%s: %d posts, %d boilerplate lines (%d occurrences) and %d hashtag lines removed, %d chunks "
                     "(%d under %d characters dropped)", source.name, stats.get("posts", 0),
                     stats.get("boilerplate_distinct", 0), stats.get("boilerplate_occurrences", 0),
                     stats.get("hashtag_lines", 0), stats.get("chunks", 0), stats.get("chunks_too_short", 0),
                     MIN_CHUNK)
        chunked.append((source, texts))
    rows, counts = build_pool(chunked, ref_texts)
    counts["telegram"] = telegram_stats
    for name, c in counts["sources"].items():
        log.info("%s: %d in, dropped %d empty, %d U+FFFD, %d with <%d Cyrillic letters, %d duplicates, "
                 "%d found in a reference file; %d kept", name, c["texts_in"], c["empty"], c["replacement_char"],
                 c["few_cyrillic"], MIN_CYRILLIC, c["duplicates"], c["reference"], c["kept"])

    out = out_dir / FILE_NAME
    with atomic_file(out) as tmp:
        with open(tmp, "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(("source", "text"))
            w.writerows(rows)
    raw = out.read_bytes()
    digest, size = sha256_bytes(raw), len(raw)
    matches = None if not expected_sha256 else digest == expected_sha256
    write_json(lock_path, {"complete": True, "files": seen,
                           "output": {"file": FILE_NAME, "rows": len(rows), "bytes": size, "sha256": digest,
                                      "expected_sha256": expected_sha256 or None, "matches": matches},
                           "references": [str(p) for p in ref_paths], "counts": counts})
    if matches:
        log.info("%s: %d rows, %d bytes, sha256 %s matches the expected digest%s", out, len(rows), size, digest,
                 " (the published pool)" if expected_sha256 == EXPECTED_SHA256 else "")
    elif matches is None:
        log.info("%s: %d rows, %d bytes, sha256 %s (no expected digest given)", out, len(rows), size, digest)
    else:
        published = f" ({EXPECTED_BYTES} bytes)" if expected_sha256 == EXPECTED_SHA256 else ""
        log.warning("%s: sha256 %s (%d bytes) differs from the expected %s%s; the file is kept, but results made "
                    "with it will not be comparable to the documented runs; %s lists what was downloaded and the "
                    "counts of every step (compare them with the transfer README)",
                    out, digest, size, expected_sha256, published, lock_path)
    return FetchResult(out, lock_path, digest, size, matches, counts)
