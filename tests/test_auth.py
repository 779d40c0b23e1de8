"""Token verification (``trio_sse/_auth.py``): keys checked at start, refusals that say why.

Unit tests call :class:`Authorizer` directly. The command-line tests call ``trio_sse._cli.main``
with ``trio.run`` replaced, to show a bad key stops ``serve`` before anything runs. The
end-to-end test serves on 127.0.0.1 port 0 (``running_server``: ``nursery.start``, under
``trio.fail_after``) with the real clock, marked ``real_time``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from functools import cache
from typing import Any

import jwt
import pytest
import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import trio_sse._commands
from trio_sse import (
    AuthError,
    ConfigError,
    ServerSettings,
    create_app,
    make_token,
    open_broadcaster,
    serve,
)
from trio_sse._auth import CACHE_SIZE, CLAIM, Action, Authorizer
from trio_sse._cli import main

from .server_helpers import bearer, running_server

HS_KEY = "test-auth-hs256-key-0123456789abcdef"
OTHER_HS_KEY = "another-hs256-key-0123456789abcdef!!"
GRANT = {CLAIM: {"publish": ["*"], "subscribe": ["*"]}}


@cache
def rsa_pair(bits: int = 2048) -> tuple[str, str]:
    """``(private PEM, public PEM)`` of a fresh RSA key, one per size for the whole run."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return private_pem, public_pem_of(private.public_key())


def public_pem_of(key: Any) -> str:
    return str(
        key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()
    )


def other_rsa_private() -> str:
    return rsa_pair(2049)[0]  # another key (of an odd size, so the cache keeps them apart)


def both() -> Authorizer:
    return Authorizer(HS_KEY, rsa_pair()[1])


def token(key: str | None = HS_KEY, algorithm: str = "HS256", **claims: Any) -> str:
    return jwt.encode({**GRANT, **claims}, key, algorithm=algorithm)


def hs256_by_hand(secret: bytes) -> str:
    """An HS256 token signed with any secret (PyJWT refuses a PEM as an HMAC secret)."""

    def b64(raw: bytes) -> bytes:
        return base64.urlsafe_b64encode(raw).rstrip(b"=")

    signed = b64(b'{"alg":"HS256","typ":"JWT"}') + b"." + b64(json.dumps(GRANT).encode())
    signature = hmac.new(secret, signed, hashlib.sha256).digest()
    return (signed + b"." + b64(signature)).decode()


# -- keys checked at start ----------------------------------------------------------------


def test_an_hs256_key_of_32_bytes_is_accepted_and_31_refused() -> None:
    Authorizer("k" * 32)
    Authorizer("é" * 16)  # 32 bytes in UTF-8: the length is counted in bytes
    with pytest.raises(ConfigError, match="jwt_key is 31 bytes; HS256 needs at least 32"):
        Authorizer("k" * 31)


def bad_public_keys() -> list[Any]:
    private_ec = ec.generate_private_key(ec.SECP256R1())
    return [
        pytest.param("garbage", "not a PEM public key", id="garbage"),
        pytest.param(rsa_pair()[0], "holds a private key", id="private-key"),
        pytest.param(public_pem_of(private_ec.public_key()), "not an RSA public key", id="ec"),
        pytest.param(rsa_pair(1024)[1], "1024 bits; RS256 needs 2048", id="rsa-1024"),
        pytest.param(
            "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            "not a PEM public key",
            id="bad-body",
        ),
    ]


@pytest.mark.parametrize(("pem", "reason"), bad_public_keys())
def test_a_public_key_that_cannot_verify_rs256_is_refused(pem: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        Authorizer(None, pem)


def no_trio_run(*args: Any) -> None:
    raise AssertionError("the server was started")


@pytest.mark.parametrize(
    ("flags", "reason"),
    [
        pytest.param(["--jwt-key", "x"], "jwt_key is 1 bytes", id="one-byte-key"),
        pytest.param(["--jwt-key", "k" * 31], "jwt_key is 31 bytes", id="31-byte-key"),
        pytest.param(["--jwt-public-key", "garbage"], "not a PEM public key", id="garbage-pem"),
        pytest.param(
            ["--jwt-public-key", rsa_pair()[0]], "holds a private key", id="private-as-public"
        ),
        pytest.param(
            ["--no-auth", "--jwt-key", "short"], "jwt_key is 5 bytes", id="even-with-no-auth"
        ),
    ],
)
def test_serve_with_an_unusable_key_exits_2_before_starting(
    flags: list[str],
    reason: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(trio_sse._commands.trio, "run", no_trio_run)
    monkeypatch.delenv("TRIO_SSE_JWT_KEY", raising=False)
    monkeypatch.delenv("TRIO_SSE_JWT_PUBLIC_KEY", raising=False)
    assert main(["serve", "--port", "0", *flags]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("trio-sse: ") and reason in err
    assert err.count("\n") == 1, "one line"
    assert out == ""


def test_serve_with_good_keys_gets_past_the_check(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[Any] = []
    monkeypatch.setattr(trio_sse._commands.trio, "run", started.append)
    flags = ["--jwt-key", HS_KEY, "--jwt-public-key", rsa_pair()[1]]
    assert main(["serve", "--port", "0", *flags]) == 0
    assert len(started) == 1
    assert capsys.readouterr().err == ""


async def test_serve_and_create_app_raise_config_error_for_a_bad_key(
    autojump_clock: trio.abc.Clock,
) -> None:
    settings = ServerSettings(port=0, jwt_key=None, jwt_public_key=rsa_pair()[0])
    with pytest.raises(ConfigError, match="holds a private key"):  # before anything starts
        await serve(None, settings)
    async with open_broadcaster() as broadcaster:
        with pytest.raises(ConfigError, match="jwt_key is 5 bytes"):
            create_app(broadcaster, ServerSettings(jwt_key="short"))


def test_no_key_at_all_is_allowed_and_refuses_every_token() -> None:
    with pytest.raises(AuthError, match="the server has no key to verify tokens"):
        Authorizer().check(token(), Action.PUBLISH, "s")


def test_the_repr_never_shows_a_key() -> None:
    text = repr(both())
    assert HS_KEY not in text and "BEGIN" not in text
    assert text == "Authorizer(algorithms=['HS256', 'RS256'])"


# -- refusals say why, with both algorithms configured ------------------------------------


def refused_tokens() -> list[Any]:
    now = int(time.time())
    rs_private = rsa_pair()[0]
    return [
        pytest.param(token(exp=now - 10), "the token has expired (exp)", id="hs-expired"),
        pytest.param(
            token(rs_private, "RS256", exp=now - 10), "the token has expired (exp)", id="rs-expired"
        ),
        pytest.param(token(nbf=now + 600), "not valid yet", id="hs-nbf-future"),
        pytest.param(token(rs_private, "RS256", nbf=now + 600), "not valid yet", id="rs-nbf"),
        pytest.param(token(iat=now + 600), "not valid yet", id="iat-future"),
        pytest.param(token(OTHER_HS_KEY), "signature does not match", id="hs-wrong-key"),
        pytest.param(
            token(other_rsa_private(), "RS256"), "signature does not match", id="rs-wrong-key"
        ),
        pytest.param(token(aud="someone"), "audience (aud)", id="hs-aud"),
        pytest.param(token(rs_private, "RS256", aud="someone"), "audience (aud)", id="rs-aud"),
        pytest.param(token(None, "none"), "algorithm 'none' is not accepted", id="alg-none"),
        pytest.param(token(HS_KEY * 2, "HS512"), "algorithm 'HS512' is not accepted", id="hs512"),
        pytest.param(
            # key confusion: HS256 with the public key as the secret
            hs256_by_hand(rsa_pair()[1].encode()),
            "signature does not match",
            id="public-key-as-hmac-secret",
        ),
        pytest.param("not-a-jwt", "not a well-formed JWT", id="malformed"),
        pytest.param("e30.e30.", "names no algorithm (alg)", id="no-alg"),
        pytest.param("W1tbXV1d.e30.", "names no algorithm (alg)", id="header-not-object"),
        pytest.param("[" * 5000 + ".e30.", "not a well-formed JWT", id="header-not-base64"),
        pytest.param(
            token(exp="soon"),
            "well-formed JWT: Expiration Time claim (exp) must be",
            id="exp-not-a-number",
        ),
    ]


@pytest.mark.parametrize(("refused", "reason"), refused_tokens())
def test_a_refused_token_is_told_the_real_reason(refused: str, reason: str) -> None:
    with pytest.raises(AuthError, match=None) as caught:
        both().check(refused, Action.PUBLISH, "s")
    assert caught.value.status == 401
    assert reason in str(caught.value)
    assert "alg value is not allowed" not in str(caught.value)


@pytest.mark.parametrize("algorithm", ["HS256", "RS256"])
def test_both_kinds_of_token_are_accepted_when_both_keys_are_set(algorithm: str) -> None:
    key = HS_KEY if algorithm == "HS256" else rsa_pair()[0]
    both().check(make_token(key, publish=["s"], algorithm=algorithm), Action.PUBLISH, "s")


@pytest.mark.real_time
async def test_the_server_answers_401_with_the_reason() -> None:
    rs_private, rs_public = rsa_pair()
    now = int(time.time())
    cases = {
        token(exp=now - 10): "the token has expired (exp)",
        token(rs_private, "RS256", nbf=now + 600): "not valid yet",
        token(OTHER_HS_KEY): "signature does not match",
        token(aud="x"): "audience (aud)",
        token(None, "none"): "algorithm 'none' is not accepted (HS256 or RS256)",
    }
    async with running_server(jwt_key=HS_KEY, jwt_public_key=rs_public) as h:
        for refused, reason in cases.items():
            response = await h.post_event("s", {"data": 1}, token=None, headers=bearer(refused))
            assert response.status_code == 401
            assert reason in response.json()["error"]
            assert response.headers["www-authenticate"] == "Bearer"
        accepted = await h.post_event("s", {"data": 1}, token=token(rs_private, "RS256"))
        assert accepted.status_code == 202


# -- the cache of verified tokens ---------------------------------------------------------


def test_a_cached_token_is_still_checked_against_each_session() -> None:
    authorizer = both()
    narrow = make_token(HS_KEY, publish=["a"])
    authorizer.check(narrow, Action.PUBLISH, "a")
    with pytest.raises(AuthError, match="does not allow publish on 'b'") as caught:
        authorizer.check(narrow, Action.PUBLISH, "b")
    assert caught.value.status == 403
    with pytest.raises(AuthError, match="does not allow subscribe"):
        authorizer.check(narrow, Action.SUBSCRIBE, "a")


@pytest.mark.real_time
async def test_a_cached_token_is_refused_once_it_expires() -> None:
    authorizer = both()
    expires = int(time.time()) + 2
    short_lived = token(exp=expires)
    authorizer.check(short_lived, Action.PUBLISH, "s")  # verified, and now cached
    authorizer.check(short_lived, Action.PUBLISH, "s")
    await trio.sleep(expires - time.time() + 0.05)  # wall-clock time, as JWT's exp
    with pytest.raises(AuthError, match=r"the token has expired \(exp\)"):
        authorizer.check(short_lived, Action.PUBLISH, "s")


def test_the_cache_is_bounded_and_keeps_the_recent_tokens() -> None:
    authorizer = both()
    first = token(n=-1)
    authorizer.check(first, Action.PUBLISH, "s")
    for n in range(CACHE_SIZE + 10):
        authorizer.check(token(n=n), Action.PUBLISH, "s")
    cached = authorizer._cache
    assert len(cached) == CACHE_SIZE
    assert first not in cached
    assert token(n=CACHE_SIZE + 9) in cached


def test_the_claims_returned_are_read_only() -> None:
    claims = both().decode(token())
    with pytest.raises(TypeError):
        claims[CLAIM] = {"publish": ["everything"]}  # type: ignore[index]
