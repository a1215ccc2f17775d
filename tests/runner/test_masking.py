"""Secret masking of whole texts and of streams cut at any place."""

from __future__ import annotations

import random
import re
import string
import time

import pytest

from conveyor.runner.masking import Masker, StreamMasker


def test_every_occurrence_is_masked() -> None:
    masker = Masker(["hunter2"])
    assert masker.mask("pw=hunter2, again hunter2!") == "pw=***, again ***!"
    assert masker.mask("hunter") == "hunter"


def test_no_secrets_leaves_text_alone() -> None:
    assert Masker().mask("anything *** at all") == "anything *** at all"


@pytest.mark.parametrize("value", ["", " ", "\n", " \t\r\n "])
def test_blank_values_are_ignored(value: str) -> None:
    masker = Masker([value])
    assert len(masker) == 0
    assert masker.mask("a b\tc") == "a b\tc"


@pytest.mark.parametrize(
    "secret", ["a.b*c", "(x)[y]{2}", "^$|?+", r"back\slash\1", "%s%d{0}", "ab|cd"]
)
def test_regex_metacharacters_are_literal(secret: str) -> None:
    masker = Masker([secret])
    assert masker.mask(f"<{secret}>") == "<***>"
    assert masker.mask("ab cd xyz 12") == "ab cd xyz 12"


def test_dot_in_a_secret_matches_only_a_dot() -> None:
    assert Masker(["a.b"]).mask("axb a.b") == "axb ***"


def test_multi_line_secret_masks_whole_value_and_each_trimmed_line() -> None:
    key = "-----BEGIN KEY-----\r\n  MIIabc123  \nZZZ999\n-----END KEY-----\n"
    masker = Masker([key])
    assert masker.mask(key) == "***"
    # Printed line by line (as a step's log is), every line is still hidden.
    for line in key.splitlines():
        assert masker.mask(line).strip() == "***"
    assert masker.mask("token: MIIabc123;") == "token: ***;"


def test_unicode_secrets() -> None:
    masker = Masker(["pässwörd🔑", "秘密"])
    assert masker.mask("x pässwörd🔑 y 秘密秘密 z") == "x *** y *** z"


def test_secret_that_is_a_substring_of_another_is_covered_by_the_longer() -> None:
    masker = Masker(["abc", "xxabcxx"])
    assert masker.mask("1xxabcxx2 abc") == "1***2 ***"


def test_overlapping_secrets_leave_no_fragment() -> None:
    masker = Masker(["abcd", "cdef"])
    assert masker.mask("_abcdef_") == "_***_"
    assert masker.mask("_cdefabcd_") == "_***_"


def test_secret_starting_inside_a_longer_one_and_reaching_past_it() -> None:
    masker = Masker(["0123456789", "789XYZ", "5678"])
    assert masker.mask("<0123456789XYZ>") == "<***>"


def test_adjacent_occurrences_merge() -> None:
    assert Masker(["ab"]).mask("ababab-ab") == "***-***"


def test_added_secret_applies_from_then_on() -> None:
    masker = Masker(["one"])
    assert masker.mask("one two") == "*** two"
    masker.add("two")
    assert masker.mask("one two") == "*** ***"


def test_values_sharing_long_prefixes_nest_without_limit() -> None:
    # a, aa, aaa, ... would nest the regex 300 deep without the flat fallback.
    masker = Masker("a" * k for k in range(1, 301))
    assert masker.mask("b" + "a" * 500 + "b") == "b***b"
    assert masker.mask("bab") == "b***b"


def test_thousands_of_secrets_mask_quickly() -> None:
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits
    secrets = ["".join(rng.choices(alphabet, k=rng.randint(8, 40))) for _ in range(5000)]
    masker = Masker(secrets)
    chosen = rng.sample(secrets, 200)
    words = []
    for i in range(20000):
        words.append(chosen[i % 200] if i % 100 == 0 else f"word{i}")
    text = " ".join(words)
    started = time.perf_counter()
    masked = masker.mask(text)
    elapsed = time.perf_counter() - started
    assert not any(secret in masked for secret in chosen)
    assert masked.count("***") == 200
    assert elapsed < 2.0


def test_mask_values_conformance_lines() -> None:
    # mask-values: `::add-mask::secret value` and the base64 of "abc\n".
    masker = Masker()
    masker.add("secret value")
    masker.add("YWJjCg==")
    assert [masker.mask(line) for line in ["secret value", "YWJjCg=="]] == ["***", "***"]


def normalized(text: str) -> str:
    return re.sub(r"(\*\*\*)+", "***", text)


def stream(masker: Masker, chunks: list[str]) -> str:
    streamed = StreamMasker(masker)
    return "".join(streamed.feed(chunk) for chunk in chunks) + streamed.flush()


def test_secret_split_across_chunks_at_every_boundary() -> None:
    masker = Masker(["s3cr3t-value", "t-v"])
    text = "before s3cr3t-value after s3cr3t-valu e"
    for cut in range(len(text) + 1):
        assert stream(masker, [text[:cut], text[cut:]]) == masker.mask(text), cut


def test_secret_split_one_character_per_chunk() -> None:
    masker = Masker(["password", "wordy"])
    text = "my passwordy and password."
    assert normalized(stream(masker, list(text))) == normalized(masker.mask(text))


def test_stream_holds_back_only_a_possible_secret_start() -> None:
    masker = Masker(["secret"])
    streamed = StreamMasker(masker)
    assert streamed.feed("plain line\n") == "plain line\n"
    assert streamed.feed("value: sec") == "value: "
    assert streamed.feed("ret!\nsecre") == "***!\n"
    assert streamed.flush() == "secre"


def test_stream_does_not_release_a_match_that_a_later_secret_overlaps() -> None:
    masker = Masker(["abc", "cdef"])
    streamed = StreamMasker(masker)
    first = streamed.feed("xabc")
    assert "c" not in first
    assert first + streamed.feed("def!") + streamed.flush() == "x***!"


def test_random_streams_match_whole_text_masking() -> None:
    rng = random.Random(1234)
    for _ in range(300):
        secrets = ["".join(rng.choices("ab\n", k=rng.randint(1, 5))) for _ in range(3)]
        masker = Masker(secrets)
        text = "".join(rng.choices("ab\nc", k=rng.randint(0, 60)))
        cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randint(0, 8))))
        chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert normalized(stream(masker, chunks)) == normalized(masker.mask(text)), (
            secrets,
            chunks,
        )


def test_stream_sees_secrets_added_while_text_is_held() -> None:
    masker = Masker(["tok"])
    streamed = StreamMasker(masker)
    assert streamed.feed("x to") == "x "
    masker.add("tomato")
    assert streamed.feed("mato y") + streamed.flush() == "*** y"
