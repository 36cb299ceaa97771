from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from app.http.schemas import Body

Phone = Annotated[
    str,
    msgspec.Meta(min_length=1, max_length=20, description="11-digit mainland mobile number", examples=["13800138000"]),
]


class OtpRequest(Body):
    phone: Phone


class OtpSent(Body):
    expires_in: int


class OtpVerify(Body):
    phone: Phone
    code: Annotated[
        str, msgspec.Meta(pattern=r"^[0-9]{6}$", description="the 6-digit code from the SMS", examples=["482913"])
    ]
    device_id: Annotated[
        str, msgspec.Meta(min_length=8, max_length=128, pattern=r"^[A-Za-z0-9._:-]+$", examples=["my-phone-0001"])
    ]
    platform: Literal["ios", "android", "harmony", "web"]


class RefreshRequest(Body):
    refresh_token: Annotated[str, msgspec.Meta(min_length=10, max_length=200)]


class OperatorSignIn(Body):
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    totp: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{6}$")]


class Tokens(Body):
    access_token: str
    refresh_token: str
    token_type: str
    expires_in: int
