import codecs

import pytest

from pipelines.ingest.html import BinaryContentError, UndecodableError, decode_payload, extract_main_text


@pytest.mark.parametrize("text,enc", [("Grüße aus Köln, schönes Wetter heute.", "cp1252"), ("Съешь же ещё этих мягких булок", "cp1251"),
                                      ("日本語のテキストです。今日はいい天気ですね。", "shift_jis"), ("Ça coûte très cher.", "utf-8")])
def test_decodes_with_declared_charset(text, enc):
    assert decode_payload(text.encode(enc), enc) == (text, codecs.lookup(enc).name)


def test_wrong_declaration_falls_back_to_detection():
    text = "Die Straße führt über die Brücke zum Bäcker. " * 5
    decoded, enc = decode_payload(text.encode("cp1252"), "utf-8")
    assert decoded == text and enc == "cp1252"


def test_meta_charset_and_bom():
    html = '<html><head><meta charset="windows-1251"></head><body>Привет, мир</body></html>'
    assert decode_payload(html.encode("cp1251"))[0] == html
    assert decode_payload(codecs.BOM_UTF8 + "héllo".encode()) == ("héllo", "utf-8")


def test_unknown_declared_charset_is_ignored():
    assert decode_payload(b"plain ascii", "x-no-such-charset")[0] == "plain ascii"


def test_binary_and_undecodable_payloads_raise():
    with pytest.raises(BinaryContentError):
        decode_payload(bytes(range(0, 32)) * 20)
    with pytest.raises(UndecodableError):
        decode_payload(bytes([0x81, 0x8D, 0x8F, 0x90, 0x9D]) * 20)


@pytest.mark.parametrize("extractor", ["resiliparse", "trafilatura"])
def test_extractors_drop_navigation(extractor):
    body = "<p>" + "This paragraph is the real article text and it is long enough to count. " * 3 + "</p>"
    html = f"<html><head><title>Hello</title></head><body><nav><a href='/'>Home</a> <a href='/n'>News</a></nav><main><article>{body}</article></main><footer>Copyright</footer></body></html>"
    title, text = extract_main_text(html, extractor)
    assert title == "Hello" and text.startswith("This paragraph is the real article text")
    assert "Home" not in text and "Copyright" not in text


def test_unknown_extractor_is_named():
    with pytest.raises(ValueError, match="unknown extractor"):
        extract_main_text("<p>x</p>", "lynx")


@pytest.mark.parametrize("between", ["–", " – ", "&ndash;", "—", "•"])
def test_text_between_inline_elements_keeps_its_separator(between):
    html = (f"<html><body><article><p>He reigned <span>1979</span>{between}<a href='/x'>1983</a> over the northern "
            "provinces, a long paragraph with enough words to be the main content of the page.</p></article></body></html>")
    _, text = extract_main_text(html)
    assert "19791983" not in text and "1979" in text and "1983" in text and "\u2060" not in text


_PARA = "<p>The council voted on the northern bridge after a long debate about its cost and its route.</p>"


def test_headline_caption_byline_and_newsletter_box_are_not_body_text():
    html = ("<html><head><title>Bridge vote</title></head><body><article><header><h1>Bridge vote</h1>"
            "<div class='article-byline'>By A. Writer, 2 May</div></header>"
            f"<figure><img src='b.jpg'><figcaption>The old bridge at dusk</figcaption></figure>{_PARA * 3}"
            "<div class='InlineImage-imageEmbedCredit'>Photo agency</div>"
            "<div class='newsletter-signup'>Get our newsletter every morning</div>"
            f"{_PARA * 2}</article></body></html>")
    title, text = extract_main_text(html)
    assert title == "Bridge vote" and text.count("The council voted") == 5
    for boilerplate in ("Bridge vote", "A. Writer", "old bridge at dusk", "Photo agency", "newsletter"):
        assert boilerplate not in text


@pytest.mark.parametrize("wrapper", ["div class='content-with-sidebar'", "div class='widget'", "header"])
def test_an_article_inside_a_boilerplate_named_wrapper_keeps_its_text(wrapper):
    html = f"<html><body><{wrapper}>{_PARA * 4}</{wrapper.split()[0]}></body></html>"
    assert extract_main_text(html)[1].count("The council voted") == 4


def test_forum_comments_are_content():
    comments = "".join(f"<div class='comment'><p>Reply {i}: I walked over that bridge every day for years.</p></div>"
                       for i in range(4))
    html = f"<html><body><main><h1>Bridge thread</h1><section class='comments'>{comments}</section></main></body></html>"
    assert extract_main_text(html)[1].count("I walked over that bridge") == 4
