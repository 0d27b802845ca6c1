"""`python -m corpus.transfer_text fetch`: the transfer pool rebuilt from its sources, offline.

A loopback HTTP mirror with the real ``{repo}/{commit}/{path}`` layout serves tiny fake source files; the
expected rows below are written by hand from the transfer README's cleaning steps, not computed by the code.
"""
from __future__ import annotations

import functools
import hashlib
import json
import logging
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from corpus.splits import DataError
from corpus.transfer_sources import (
    SOURCES,
    Source,
    SourceFile,
    boilerplate_lines,
    chunk_post,
    cut_long,
    default_references,
    fetch,
    pack_chunks,
    split_sentences,
    telegram_lines,
)
from corpus.transfer_text import main

BOILER = "Подписаться | Прислать новость"
A = ("Первое предложение этого длинного поста рассказывает о том, как городские власти решили обновить "
     "парки и скверы в центре города к началу лета.")
B_SRC = ("Второе предложение добавляет, что работы  начнутся в апреле и продлятся почти три месяца, а жителей "
         "попросили потерпеть шум и временные ограждения.")
TELEGRAM_1 = [  # data/raw/1001000724666_messages.json
    {"message_id": 1, "text": f"**Новый закон вступил в силу**\n\nПодробности [читайте на сайте](https://example.com/a) "
                              f"ведомства. Источник: https://example.com/b\n\n{BOILER}"},
    {"message_id": 2, "text": f"Пример кода на Python:\n```python\nprint('привет, мир')\n```\nВсё работает отлично!\n"
                              f"#python #код\n{BOILER}"},
    {"message_id": 3, "text": f"{A} {B_SRC} Третье предложение короткое.\n"  # over 300 characters: chunked
                              "~~Четвёртое~~ предложение завершает ||пост|| и `благодарит` читателей за внимание!"},
    {"message_id": 4, "text": "#новости"},
    {"message_id": 5, "text": f"Коротко\n{BOILER}"},
    {"message_id": 6},
]
TELEGRAM_2 = ([{"message_id": 10 + i, "text": f"Пост номер {i}\n{BOILER}"} for i in range(1, 18)]  # 17 + 3 = 20 posts
              + [{"message_id": 40, "text": "Последняя новость дня: всё спокойно."},
                 {"message_id": 41, "text": "Breaking news from the wire"}])
SNLP = ('text,inappropriate\n'
        'Обычное сообщение на форуме о погоде,0\n'
        'Дубликат текста между источниками,1\n'
        'Сломанная \ufffd кодировка текста,0\n'
        'Latin only text here,0\n'
        '"Текст со ссылкой https://example.org/x и  двумя пробелами\nи переносом строки",1\n'
        '"   ",0\n')
LLM = ('id,text,label\n'
       '1,"Какой чудесный день, сегодня!",positive\n'
       '2,Этот пост совпадает с эталоном,neutral\n'
       '3,Смотрите www.example.com и t.me/channel сейчас же,neutral\n')
CEDR = ('text,labels,source\n'
        'дубликат   текста МЕЖДУ источниками,[],lj\n'
        'ПОСЛЕДНЯЯ новость дня:   всё спокойно.,[],lenta\n'
        '"Предложение из CEDR , токенизированное .",[1],lj\n'
        'Мы,[],twitter\n')
REFERENCE = "label,text\nneutral,ЭТОТ пост  совпадает с эталоном https://vk.com/wall1\n"

EXPECTED_CSV = (
    "source,text\n"
    "telegram_news,Новый закон вступил в силу Подробности читайте на сайте ведомства. Источник:\n"
    "telegram_news,Пример кода на Python: Всё работает отлично!\n"
    'telegram_news,"Первое предложение этого длинного поста рассказывает о том, как городские власти решили обновить '
    "парки и скверы в центре города к началу лета. Второе предложение добавляет, что работы начнутся в апреле и "
    'продлятся почти три месяца, а жителей попросили потерпеть шум и временные ограждения."\n'
    "telegram_news,Третье предложение короткое. Четвёртое предложение завершает пост и благодарит читателей за "
    "внимание!\n"
    "telegram_news,Последняя новость дня: всё спокойно.\n"
    "snlp_sensitive_topics,Обычное сообщение на форуме о погоде\n"
    "snlp_sensitive_topics,Дубликат текста между источниками\n"
    "snlp_sensitive_topics,Текст со ссылкой и двумя пробелами и переносом строки\n"
    'llm_synthetic_vk,"Какой чудесный день, сегодня!"\n'
    "llm_synthetic_vk,Смотрите и сейчас же\n"
    'cedr,"Предложение из CEDR , токенизированное ."\n'
)


def _small_manifest(pin: dict[str, str] | None = None) -> tuple[Source, ...]:
    """The four sources, each restricted to the files the mirror holds (Telegram listed out of order: the
    fetch reads a source's files in sorted name order)."""
    pin = pin or {}

    def files(*paths):
        return tuple(SourceFile(p, pin.get(p)) for p in paths)

    tg, snlp, llm, cedr = SOURCES
    return (
        Source(tg.name, "test/telegram", "1" * 40, files("data/raw/1001003313758_messages.json",
                                                         "data/raw/1001000724666_messages.json"),
               "json", tg.licence, telegram_cleaning=True),
        Source(snlp.name, "test/snlp", "2" * 40, files("Version1/appropriateness/test.csv"), "csv", snlp.licence),
        Source(llm.name, "test/llm", "3" * 40, files("data_synthetic/synthetic_base_5k.csv"), "csv", llm.licence),
        Source(cedr.name, "test/cedr", "4" * 40, files("CEDR/cedr-main-test.csv"), "csv", cedr.licence),
    )


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def mirror(tmp_path, request, monkeypatch):
    """(base URL, {url: served bytes}) of a loopback mirror holding the small manifest's files."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    root = tmp_path / "mirror"
    content = {
        "data/raw/1001000724666_messages.json": json.dumps(TELEGRAM_1, ensure_ascii=False, indent=1).encode(),
        "data/raw/1001003313758_messages.json": json.dumps(TELEGRAM_2, ensure_ascii=False, indent=1).encode(),
        "Version1/appropriateness/test.csv": SNLP.encode(),
        "data_synthetic/synthetic_base_5k.csv": LLM.encode(),
        "CEDR/cedr-main-test.csv": CEDR.encode(),
    }
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    base = f"http://127.0.0.1:{server.server_address[1]}"
    served = {}
    for source in _small_manifest():
        for sf in source.files:
            target = root / source.repo / source.commit / sf.path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content[sf.path])
            served[f"{base}/{source.repo}/{source.commit}/{sf.path}"] = content[sf.path]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        server.server_close()
        thread.join(5)

    request.addfinalizer(stop)
    return base, served


@pytest.fixture
def reference(tmp_path):
    path = tmp_path / "reference.csv"
    path.write_text(REFERENCE, encoding="utf-8")
    return path


def test_fetch_rebuilds_the_hand_computed_pool(tmp_path, mirror, reference, caplog):
    base, served = mirror
    expected_digest = hashlib.sha256(EXPECTED_CSV.encode("utf-8")).hexdigest()
    with caplog.at_level(logging.INFO, logger="corpus.transfer_sources"):
        result = fetch(tmp_path / "out", manifest=_small_manifest(), mirror=base, references=[reference],
                       expected_sha256=expected_digest)
    assert result.path.read_text(encoding="utf-8") == EXPECTED_CSV
    assert result.matches is True and result.sha256 == expected_digest
    assert "matches the expected digest" in caplog.text
    assert "downloading 5 files from 4 sources" in caplog.text
    assert "licence of snlp_sensitive_topics: CC BY-NC-SA 4.0" in caplog.text

    lock = json.loads(result.lock.read_text(encoding="utf-8"))
    assert lock["complete"] is True
    digests = {u: hashlib.sha256(b).hexdigest() for u, b in served.items()}
    assert {f["url"]: f["sha256"] for f in lock["files"]} == digests
    assert {f["url"]: f["bytes"] for f in lock["files"]} == {u: len(b) for u, b in served.items()}
    assert lock["output"]["sha256"] == expected_digest and lock["output"]["rows"] == 11
    counts = lock["counts"]["sources"]
    assert counts["telegram_news"] == {"texts_in": 6, "empty": 0, "replacement_char": 0, "few_cyrillic": 1,
                                       "duplicates": 0, "reference": 0, "kept": 5}
    assert counts["snlp_sensitive_topics"] == {"texts_in": 6, "empty": 1, "replacement_char": 1, "few_cyrillic": 1,
                                               "duplicates": 0, "reference": 0, "kept": 3}
    assert counts["llm_synthetic_vk"]["reference"] == 1 and counts["cedr"]["duplicates"] == 2
    assert lock["counts"]["telegram"]["telegram_news"] == {
        "posts": 24, "boilerplate_distinct": 1, "boilerplate_occurrences": 20, "hashtag_lines": 2,
        "chunks": 24, "chunks_too_short": 18}

    # the published digest (the default) does not match these fake sources: kept, with a warning naming both
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="corpus.transfer_sources"):
        again = fetch(tmp_path / "out", manifest=_small_manifest(), mirror=base, references=[reference])
    assert again.matches is False and again.path.read_text(encoding="utf-8") == EXPECTED_CSV
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and expected_digest in warning[0] and "7525a5a72a29" in warning[0]
    assert "not be comparable to the documented runs" in warning[0]


def test_a_pinned_digest_that_differs_fails_naming_the_url(tmp_path, mirror, reference):
    base, _ = mirror
    path = "Version1/appropriateness/test.csv"
    with pytest.raises(DataError) as e:
        fetch(tmp_path / "out", manifest=_small_manifest({path: "0" * 64}), mirror=base, references=[reference])
    message = str(e.value)
    assert "\n" not in message and f"{base}/test/snlp/{'2' * 40}/{path}" in message and "0" * 64 in message
    lock = json.loads((tmp_path / "out" / "sources.lock.json").read_text(encoding="utf-8"))
    assert lock["complete"] is False and len(lock["files"]) == 2  # the two Telegram files seen before it
    assert not (tmp_path / "out" / "transfer_texts.csv").exists()


def test_cli_exits_2_with_one_error_line_when_a_file_is_missing(tmp_path, mirror, reference, capsys):
    base, _ = mirror  # the mirror lacks the real manifest's files: the first one is a 404
    rc = main(["fetch", "--out", str(tmp_path / "out"), "--mirror", base, "--reference", str(reference)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("error: could not download ")
    assert f"{base}/NKTKLN/telegram-news-classifier/b8b03f1982910fbf4151c184f1ade8b67aa1f585/data/raw/" in err[0]


def test_chunker_by_hand():
    # a sentence longer than the limit is cut at the last space that fits, then pieces pack greedily
    assert cut_long("Один два три четыре пять шесть семь", 12) == ["Один два три", "четыре пять", "шесть семь"]
    assert cut_long("абвгдежзий", 4) == ["абвг", "дежз", "ий"]
    assert pack_chunks(["Один два три четыре пять шесть семь", "Да.", "Нет."], 12) == [
        "Один два три", "четыре пять", "шесть семь", "Да. Нет."]
    # sentences end after . ! ? … followed by whitespace, and at line breaks
    assert split_sentences("Версия v1.2 вышла.  Ура") == ["Версия v1.2 вышла.", "Ура"]
    assert chunk_post(["Первая фраза. Вторая фраза! Третья?", "Новая строка… конец"], 30) == [
        "Первая фраза. Вторая фраза!", "Третья? Новая строка… конец"]
    # a post within the limit stays whole
    assert chunk_post(["Короткий пост.", "Вторая строка"], 300) == ["Короткий пост. Вторая строка"]


def test_boilerplate_threshold_and_url_before_markup():
    posts = [["раз", "общая строка"]] * 19 + [["общая строка", "два"]]
    assert boilerplate_lines(posts) == {"общая строка"}  # 20 posts; "раз" is in 19
    # URLs go before the markup: a link hidden by markup survives, as in the published pool
    assert telegram_lines("Читать: ____bit.ly/abc__\nЕщё: ____https://bbc.in/x__\n[ссылка](https://a.ru) тут") == [
        "Читать: bit.ly/abc", "Ещё:", "ссылка тут"]


def test_default_references_are_rusentiment_and_rusentitweet(tmp_path, monkeypatch):
    data = tmp_path / "rusentiment"
    data.mkdir()
    (data / "rusentiment_test.csv").write_text("label,text\nneutral,Привет\n", encoding="utf-8")
    (tmp_path / "rusentitweet").mkdir()
    (tmp_path / "rusentitweet" / "rusentitweet_test.csv").write_text("label,text\nskip,Твит\n", encoding="utf-8")
    monkeypatch.setenv("RUSENTIMENT_DATA_DIR", str(data))
    assert default_references() == [data / "rusentiment_test.csv", tmp_path / "rusentitweet" / "rusentitweet_test.csv"]
