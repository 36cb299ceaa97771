"""Who may scrape /metrics (app.http.system.controllers.scrape_refusal)."""

from __future__ import annotations

from app.http.system.controllers import scrape_refusal
from core.errors import Forbidden, Unauthorized

TOKEN = "a-long-metrics-token"


def test_without_a_token_only_a_local_unproxied_client() -> None:
    assert scrape_refusal(None, {}, "127.0.0.1", None) is None
    assert scrape_refusal(None, {}, "::1", None) is None
    assert isinstance(scrape_refusal(None, {}, "192.0.2.7", None), Forbidden)
    assert isinstance(scrape_refusal(None, {}, "testclient", None), Forbidden)
    assert isinstance(scrape_refusal(None, {}, None, None), Forbidden)
    assert isinstance(scrape_refusal(None, {"x-forwarded-for": "203.0.113.9"}, "127.0.0.1", None), Forbidden)
    assert isinstance(scrape_refusal(None, {"x-client": "203.0.113.9"}, "127.0.0.1", "x-client"), Forbidden)


def test_with_a_token_whoever_sends_it() -> None:
    assert scrape_refusal(TOKEN, {"authorization": f"Bearer {TOKEN}"}, "192.0.2.7", None) is None
    assert scrape_refusal(TOKEN, {"authorization": f"bearer  {TOKEN} "}, None, None) is None
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {TOKEN}"}):
        refused = scrape_refusal(TOKEN, headers, "127.0.0.1", None)  # local or not, the token is asked for
        assert isinstance(refused, Unauthorized)
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
