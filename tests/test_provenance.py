"""The provenance detector on files signed in the test with Content Credentials (C2PA), by a
certificate authority the test makes: generated content in the active manifest or only in an
ingredient's, capture history, a file changed after signing, and files without credentials;
and on generator marks written into a file's own metadata."""

from __future__ import annotations

import datetime
import io
import json
import threading

import c2pa
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from PIL import ExifTags, Image, PngImagePlugin
from sqlalchemy import select

from scanner.config import Settings
from scanner.imaging import Sample, decode
from scanner.pipeline import Pipeline
from scanner.store import Database, tables
from scanner_plugins.provenance import IPTC, NOTHING, Provenance

NOW = datetime.datetime.now(datetime.timezone.utc)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "scanner tests"),
        ]
    )


def _usage(sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=sign,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=not sign,
        crl_sign=not sign,
        encipher_only=False,
        decipher_only=False,
    )


def _certificate(common_name: str, public_key, issuer, issuer_key) -> x509.Certificate:
    """A CA certificate when `issuer` is None (self-signed), else a signing certificate."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(issuer.subject if issuer else _name(common_name))
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
        .add_extension(_usage(sign=issuer is not None), critical=True)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False
        ).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def signer():
    """A C2PA signer whose certificate a test CA issued (C2PA wants a chain, not a self-signed
    leaf): untrusted, as any certificate not on a trust list the reader holds."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = _certificate("scanner test CA", ca_key.public_key(), None, ca_key)
    leaf = _certificate("scanner test generator", key.public_key(), ca, ca_key)
    chain = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (leaf, ca))
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    info = c2pa.C2paSignerInfo(alg=b"es256", sign_cert=chain, private_key=private, ta_url=None)
    return c2pa.Signer.from_info(info)


@pytest.fixture(scope="module")
def provenance():
    detector = Provenance()
    detector.load()
    return detector


def picture(fmt: str = "JPEG", colour=(120, 60, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), colour).save(buffer, fmt)
    return buffer.getvalue()


def manifest(generator: str, action: str, source_type: str | None) -> dict:
    act = {"action": action}
    if source_type:
        act["digitalSourceType"] = IPTC + source_type
    if action == "c2pa.opened":  # C2PA wants the opened file named: the ingredient below
        act["parameters"] = {"ingredientIds": ["parent"]}
    return {
        "claim_generator_info": [{"name": generator, "version": "1.0"}],
        "title": "picture",
        "assertions": [{"label": "c2pa.actions", "data": {"actions": [act]}}],
    }


def signed(signer, data: bytes, spec: dict, mime="image/jpeg", ingredient: bytes | None = None):
    out = io.BytesIO()
    with c2pa.Builder(spec) as builder:
        if ingredient is not None:
            parent = {"title": "parent", "relationship": "parentOf", "label": "parent"}
            builder.add_ingredient(parent, mime, io.BytesIO(ingredient))
        builder.sign(signer, mime, io.BytesIO(data), out)
    return out.getvalue()


def judge(detector, data: bytes):
    rgb, fmt = decode(data)
    return detector.predict([Sample("x", "", data, rgb, fmt)])[0]


def test_a_generated_picture_is_fake_whatever_its_certificate(signer, provenance):
    data = signed(
        signer, picture(), manifest("Imagine 3", "c2pa.created", "trainedAlgorithmicMedia")
    )
    result = judge(provenance, data)
    assert result.label == "fake" and result.score >= 0.9
    assert "trainedAlgorithmicMedia" in result.reason and "Imagine 3" in result.reason
    (active,) = result.details["manifests"]
    assert active["active"] and "scanner test generator" in active["signed_by"]
    # Untrusted (not on any trust list we hold), and it still counts.
    assert "signingCredential.untrusted" in result.details["validation"]


def test_generation_recorded_only_in_an_ingredient_counts(signer, provenance):
    generated = signed(
        signer, picture(), manifest("Imagine 3", "c2pa.created", "trainedAlgorithmicMedia")
    )
    # An editor opened the generated file and saved it: its own manifest says only "opened".
    edited = signed(
        signer, generated, manifest("Photo Editor", "c2pa.opened", None), ingredient=generated
    )
    result = judge(provenance, edited)
    assert result.label == "fake", result
    assert "ingredient" in result.reason
    assert [m["active"] for m in result.details["manifests"]] == [True, False]
    assert result.details["manifests"][0]["actions"] == ["c2pa.opened"]


def test_capture_history_is_not_fakery(signer, provenance):
    for source_type in ("digitalCapture", "algorithmicMedia"):  # a formula's output is not AI
        data = signed(signer, picture(), manifest("Camera", "c2pa.created", source_type))
        result = judge(provenance, data)
        assert result.label == "real" and result.score < 0.5, (source_type, result)
        assert result.details["manifests"][0]["source_types"] == [source_type]
        assert not result.details["changed_after_signing"]


def test_a_png_with_credentials_is_read_too(signer, provenance):
    spec = manifest("Imagine 3", "c2pa.created", "compositeWithTrainedAlgorithmicMedia")
    data = signed(signer, picture("PNG"), spec, mime="image/png")
    assert judge(provenance, data).label == "fake"


def test_a_picture_changed_after_signing_is_a_finding_of_its_own(signer, provenance):
    data = signed(signer, picture(), manifest("Camera", "c2pa.created", "digitalCapture"))
    # One bit of the compressed picture flipped, after the manifest was signed: the claim's
    # hash of the content no longer matches (the file still decodes).
    at = data.rindex(b"\xff\xda") + 40  # inside the last scan's entropy-coded data
    while data[at] == 0xFF or data[at - 1] == 0xFF or data[at] ^ 1 == 0xFF:
        at += 1
    changed = data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]
    result = judge(provenance, changed)
    assert result.details["changed_after_signing"], result
    assert result.label == "fake" and "changed after signing" in result.reason


def test_files_without_credentials_are_not_applicable(provenance):
    # The last one holds the bytes "c2pa" (a PNG text chunk) but no manifest: it is parsed.
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "see c2pa.org")
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), (1, 2, 3)).save(buffer, "PNG", pnginfo=info)
    for data in (picture(), picture("PNG"), buffer.getvalue()):
        result = judge(provenance, data)
        assert result.label == "not-applicable" and result.score is None, result
        assert result.reason == NOTHING


def png_with_text(**chunks: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), (9, 8, 7)).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def jpeg_with(comment: bytes | None = None, software: str | None = None, xmp: bytes = b""):
    exif = Image.Exif()
    if comment is not None:
        exif.get_ifd(ExifTags.IFD.Exif)[0x9286] = comment
    if software:
        exif[0x0131] = software
    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), (9, 8, 7)).save(buffer, "JPEG", exif=exif, xmp=xmp)
    return buffer.getvalue()


A1111 = "a castle at dusk\nSteps: 30, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512"
SOURCE_TYPE_XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
    b'Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/'
    b'trainedAlgorithmicMedia"/></rdf:RDF></x:xmpmeta>'
)


@pytest.mark.parametrize(
    "data, mark",
    [
        (png_with_text(parameters=A1111), "PNG text chunk 'parameters'"),
        (png_with_text(prompt='{"3": {"class_type": "KSampler"}}'), "PNG text chunk 'prompt'"),
        (jpeg_with(b"UNICODE\x00" + A1111.encode("utf-16-be")), "EXIF UserComment"),
        (jpeg_with(b"UNICODE\x00" + A1111.encode("utf-16-le")), "EXIF UserComment"),
        (jpeg_with(b"ASCII\x00\x00\x00" + A1111.encode()), "EXIF UserComment"),
        (jpeg_with(software="Midjourney v6"), "software 'Midjourney v6'"),
        (jpeg_with(xmp=SOURCE_TYPE_XMP), "XMP digital source type trainedAlgorithmicMedia"),
    ],
)
def test_generator_marks_without_credentials_are_fake(provenance, data, mark):
    result = judge(provenance, data)
    assert result.label == "fake" and result.score >= 0.9, result
    assert mark in result.reason and result.details["generator_marks"]


def test_a_generator_mark_outweighs_credentials_that_record_only_history(signer, provenance):
    spec = manifest("Photo Editor", "c2pa.created", "digitalCapture")
    data = signed(signer, png_with_text(parameters=A1111), spec, mime="image/png")
    result = judge(provenance, data)
    assert result.label == "fake" and "PNG text chunk 'parameters'" in result.reason, result
    assert result.details["manifests"][0]["source_types"] == ["digitalCapture"]


def test_ordinary_metadata_is_no_generator_mark(provenance):
    for data in (
        jpeg_with(b"ASCII\x00\x00\x00holiday in Rome", software="Adobe Photoshop 25.0"),
        png_with_text(Comment="Steps to the beach", Software="GIMP 2.10"),
    ):
        result = judge(provenance, data)
        assert result.label == "not-applicable" and result.reason == NOTHING, result


def test_a_scan_stores_the_verdict_and_a_worker_process_can_read_credentials(signer, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "gen.jpg").write_bytes(
        signed(signer, picture(), manifest("Imagine 3", "c2pa.created", "trainedAlgorithmicMedia"))
    )
    (folder / "plain.jpg").write_bytes(picture())
    detector = Provenance()
    detector.load()
    db = Database(f"sqlite:///{tmp_path / 'scan.db'}")
    stats = Pipeline(db, [detector], Settings(workers=1)).scan(
        [str(folder / "gen.jpg"), str(folder / "plain.jpg")]
    )
    assert stats.detector_errors == 0
    with db.read() as conn:
        rows = {r.label: r for r in conn.execute(select(tables.verdicts))}
    assert set(rows) == {"fake", "not-applicable"}
    assert json.loads(rows["fake"].details)["manifests"][0]["generator"].startswith("Imagine 3")


def _app11_segments(data: bytes) -> list[tuple[int, int]]:
    """(start of payload, end) of each APP11 (JUMBF, where C2PA lives) segment of a JPEG."""
    found, at = [], 2
    while at + 4 <= len(data) and data[at] == 0xFF and data[at + 1] not in (0xDA, 0xD9):
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if data[at + 1] == 0xEB:
            found.append((at + 4, at + 2 + length))
        at += 2 + length
    return found


def hostile_manifests(signer) -> dict[str, bytes]:
    data = signed(signer, picture(), manifest("Imagine 3", "c2pa.created", "digitalCapture"))
    start, end = _app11_segments(data)[0]
    middle = (start + end) // 2
    garbled = bytes(b ^ 0x5A for b in data[middle : middle + 64])
    # The first JUMBF box's size field (after APP11's "JP" id, instance and sequence numbers).
    box = data.index(b"jumb", start) - 4
    return {
        # The file cut off inside its manifest store.
        "truncated": data[:middle],
        # 64 bytes in the middle of the store scrambled, every length left as it was.
        "malformed": data[:middle] + garbled + data[middle + 64 :],
        # A box that claims to be 4 GB long.
        "oversized": data[:box] + b"\xff\xff\xff\xf0" + data[box + 4 :],
    }


@pytest.mark.parametrize("kind", ["truncated", "malformed", "oversized"])
def test_a_hostile_manifest_store_is_a_finding_not_a_crash_or_a_hang(signer, provenance, kind):
    data = hostile_manifests(signer)[kind]
    # The bytes are what is under test: a scan would record the truncated file as a
    # truncated image (its pixels come after the store) and never reach the detector.
    rgb, fmt = decode(picture())
    outcome: list = []
    worker = threading.Thread(
        target=lambda: outcome.append(provenance.predict([Sample("x", "", data, rgb, fmt)])[0]),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=60)
    assert outcome, f"reading a {kind} manifest store did not finish in 60 s"
    result = outcome[0]
    assert result.problem() is None
    # Either the reader refuses the store (a finding saying so) or what it could read was
    # judged; never silence about a store that is there.
    assert result.reason and result.reason != NOTHING, result
    expected = {
        "truncated": "present but unreadable",
        "malformed": "fail validation",  # the claim's hash of an assertion no longer matches
        "oversized": None,  # the reader takes the store's real extent: read and judged
    }[kind]
    if expected:
        assert expected in result.reason, result
    if kind == "malformed":
        assert result.label == "fake" and "assertion.hashedURI.mismatch" in result.reason
