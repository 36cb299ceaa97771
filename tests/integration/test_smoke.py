from litestar.testing import AsyncTestClient

from app.asgi import create_app
from infra.config import Settings


async def test_ready(settings: Settings) -> None:
    async with AsyncTestClient(create_app(settings)) as client:
        r = await client.get("/health/ready")
        assert r.status_code == 200, r.text
        r = await client.get("/v1/card")
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("application/problem+json")
        print(r.json())
