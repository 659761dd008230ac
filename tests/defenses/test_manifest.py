"""Signed manifests: exact flags for every tampered sample, refusal of forged signatures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from poisonlab.defenses.data_checks.manifest import (
    Manifest,
    ManifestCheck,
    generate_keypair,
    sample_digests,
    sign_manifest,
    verify_manifest,
)
from poisonlab.metrics import detection_scores


@pytest.fixture(scope="module")
def keys() -> tuple[bytes, bytes]:
    return generate_keypair()


@pytest.fixture(scope="module")
def signed(digits_splits, keys) -> Manifest:
    return sign_manifest(digits_splits.train, keys[0])


def test_keypair_and_round_trip(signed: Manifest, keys, tmp_path: Path, digits_splits) -> None:
    private, public = keys
    assert private.startswith(b"-----BEGIN PRIVATE KEY-----") and public.startswith(
        b"-----BEGIN PUBLIC KEY-----"
    )
    assert signed.count == len(digits_splits.train) and signed.class_names == digits_splits.train.class_names
    # some digests end in a zero byte, which numpy's S32 items would silently drop
    assert (signed.digests.view(np.uint8).reshape(-1, 32)[:, -1] == 0).any()
    path = signed.save(tmp_path / "train.manifest.json")
    loaded = Manifest.load(path)
    assert np.array_equal(loaded.digests.view(np.uint8), signed.digests.view(np.uint8))
    assert loaded.message() == signed.message()
    verify_manifest(loaded, public)
    assert "count=1167" in repr(loaded)


def test_clean_data_passes(signed: Manifest, keys, digits_splits) -> None:
    det = ManifestCheck(manifest=signed, public_key=keys[1]).fit(digits_splits.train)
    assert det.predict().sum() == 0
    assert det.details_["unchanged"] == len(digits_splits.train) and det.details_["missing_from_dataset"] == 0


def test_tampered_pixels_labels_additions_and_copies_are_flagged_exactly(signed, keys, digits_splits) -> None:
    clean = digits_splits.train
    x, y = clean.x.copy(), clean.y.copy()
    x[10, 3, 3, 0] ^= 1  # one pixel, one bit
    y[20] = (y[20] + 1) % 10  # one label
    tampered = clean.replace(x=x, y=y).subset(np.arange(len(clean) - 5))  # 5 samples removed
    tampered = tampered.concat(digits_splits.val.subset(np.arange(3)))  # 3 foreign samples
    tampered = tampered.concat(clean.subset([30, 30]))  # sample 30 twice more
    det = ManifestCheck(manifest=signed, public_key=keys[1]).fit(tampered)
    n = len(tampered)
    assert np.flatnonzero(det.predict()).tolist() == [10, 20, n - 5, n - 4, n - 3, n - 2, n - 1]
    old, new = clean.class_names[clean.y[20]], clean.class_names[y[20]]
    assert det.details_ == {
        "signature": "valid",
        "listed": len(clean),
        "unchanged": len(clean) - 7,
        "changed": 5,
        "extra_copies": 2,
        "missing_from_dataset": 7,
        "relabelled": {f"{old}->{new}": 1},
    }
    assert set(det.score_samples().tolist()) == {0.0, 1.0}


def test_poisoned_fixtures_are_flagged_exactly(backdoored, mislabeled, digits_splits, signed, keys) -> None:
    check = ManifestCheck(manifest=signed, public_key=keys[1])
    for case in (backdoored, mislabeled):
        flagged = check.fit_predict(case.dataset)
        assert np.array_equal(flagged, case.mask)
        assert detection_scores(case.mask, flagged, check.score_samples())["auroc"] == 1.0
    assert check.details_["relabelled"] == {"3->8": int(mislabeled.mask.sum())}
    json.dumps(check.details_)


def test_forged_or_edited_manifests_are_refused(
    signed: Manifest, keys, digits_splits, tmp_path: Path
) -> None:
    _, other_public = generate_keypair()
    with pytest.raises(ValueError, match="signature does not match"):
        verify_manifest(signed, other_public)
    with pytest.raises(ValueError, match="signature does not match"):
        ManifestCheck(manifest=signed, public_key=other_public).fit(digits_splits.train)
    # the attacker re-lists a poisoned set under the original signature
    poisoned = digits_splits.train.replace(y=np.roll(digits_splits.train.y, 1))
    forged = Manifest(
        sample_digests(poisoned.x, poisoned.y), signed.class_names, signed.image_shape, "x", signed.signature
    )
    with pytest.raises(ValueError, match="signature does not match"):
        ManifestCheck(manifest=forged, public_key=keys[1]).fit(poisoned)
    # editing the saved JSON (one digest, or the class names) breaks the signature too
    path = signed.save(tmp_path / "m.json")
    for key, value in [("digests", None), ("class_names", list("abcdefghij"))]:
        doc = json.loads(path.read_text())
        doc[key] = (
            value
            if value is not None
            else [sample_digests(poisoned.x[:1], poisoned.y[:1])[0].hex()] + doc[key][1:]
        )
        edited = tmp_path / f"edited-{key}.json"
        edited.write_text(json.dumps(doc))
        with pytest.raises(ValueError, match="signature does not match"):
            verify_manifest(Manifest.load(edited), keys[1])
    det = ManifestCheck(manifest=str(path), public_key=keys[1].decode())  # a path and a str key work
    assert det.fit_predict(digits_splits.train).sum() == 0


def test_bad_inputs(signed: Manifest, keys, digits_splits, colour_data, tmp_path: Path) -> None:
    check = ManifestCheck(manifest=signed, public_key=keys[1])
    with pytest.raises(ValueError, match="dataset has classes"):
        check.fit(digits_splits.train.replace(class_names=tuple("abcdefghij")))
    with pytest.raises(ValueError, match=r"dataset images have shape \(4, 8, 1\)"):
        check.fit(digits_splits.train.replace(x=np.ascontiguousarray(digits_splits.train.x[:, :4])))
    with pytest.raises(ValueError, match="public_key is not an unencrypted PEM public key"):
        ManifestCheck(manifest=signed, public_key=b"not a key")
    with pytest.raises(ValueError, match="public_key must be Ed25519 PEM bytes"):
        ManifestCheck(manifest=signed, public_key=42)
    ec_public = ec.generate_private_key(ec.SECP256R1()).public_key()
    pem = ec_public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(ValueError, match="public_key must be an Ed25519 key"):
        ManifestCheck(manifest=signed, public_key=pem)
    with pytest.raises(ValueError, match="private_key is not an unencrypted PEM private key"):
        sign_manifest(colour_data, keys[1])
    with pytest.raises(ValueError, match="manifest must be a Manifest"):
        ManifestCheck(manifest={"digests": []}, public_key=keys[1])
    with pytest.raises(ValueError, match="dataset must be a poisonlab Dataset"):
        sign_manifest(colour_data.x, keys[0])
    with pytest.raises(ValueError, match="dataset is empty"):
        sign_manifest(colour_data.subset([]), keys[0])
    broken = tmp_path / "broken.json"
    for text in ["{", json.dumps({"format": "other"}), json.dumps({"format": "poisonlab-manifest/1"})]:
        broken.write_text(text)
        with pytest.raises(ValueError, match="is not a valid poisonlab manifest"):
            Manifest.load(broken)
    with pytest.raises(ValueError, match="is not a valid poisonlab manifest"):
        Manifest.load(tmp_path / "missing.json")
    with pytest.raises(ValueError, match="signature must be 64 bytes"):
        Manifest(signed.digests, signed.class_names, signed.image_shape, "x", b"short")
