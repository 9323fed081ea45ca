"""What the fixtures contain: taxpayers, certificate variants and the tokens that hold them.

This is data, kept in one place so that tests, the demo and benchmarks all speak of the same
enterprises and media. PINs here are test PINs of throw-away SoftHSM tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

from cert_agent.common.taxpayer_id import uscc_check_character
from cert_agent.drivers.pin import INITIAL_PIN

SO_PIN = "SO-test-2468"


def uscc(body17: str) -> str:
    """A unified social credit code with a correct GB 32100-2015 check character."""
    return body17 + uscc_check_character(body17)


def uscc_with_wrong_check(body17: str) -> str:
    right = uscc_check_character(body17)
    return body17 + ("1" if right != "1" else "2")


@dataclass(frozen=True)
class Taxpayer:
    key: str
    name: str
    taxpayer_id: str
    is_agency: bool = False


TAXPAYERS = {
    t.key: t
    for t in (
        Taxpayer("hairun", "青岛海润贸易有限公司", uscc("91370202MA3C4Q7X1")),
        Taxpayer("lanhai", "青岛蓝海制造有限公司", uscc("91370211MA3D8K2P5")),
        Taxpayer("chuxin", "青岛初心科技有限公司", uscc("91370212MA3E1L6N0")),
        Taxpayer("shuangzheng", "青岛双正物流有限公司", uscc("91370213MA3F5M9R3")),
        Taxpayer("xinda", "青岛信达财税代理有限公司", uscc("91370203MA3G2N4T8"), is_agency=True),
        Taxpayer("hengxin", "青岛恒信记账服务有限公司", uscc("91370214MA3H7P1W6"), is_agency=True),
        Taxpayer("testcase", "青岛测试用例有限公司", uscc("91370215MA3J3Q8Y2")),
        Taxpayer("badcheck", "青岛校验错误有限公司", uscc_with_wrong_check("91370216MA3K6R5U9")),
    )
}


@dataclass(frozen=True)
class CertSpec:
    """One certificate (and, unless ``with_key`` is False, its key pair) on a token."""

    name: str  # stable fixture name, used by tests: "hairun-ec", "expired", ...
    taxpayer: str  # key into TAXPAYERS
    key_type: str = "EC-P256"  # "EC-P256", "EC-P384" or "RSA-2048"
    variant: str = "valid"  # valid | expired | not_yet_valid | revoked | untrusted | no_digital_signature
    with_key: bool = True
    unparsable: bool = False


@dataclass(frozen=True)
class TokenSpec:
    name: str  # stable fixture name
    label: str  # CKA label, at most 32 bytes of UTF-8
    pin: str
    certs: tuple[CertSpec, ...]
    flags: int = 0  # extra CK_TOKEN_INFO flags stored into SoftHSM (locked, final try)


CKF_USER_PIN_FINAL_TRY = 0x00020000
CKF_USER_PIN_LOCKED = 0x00040000

TOKENS: tuple[TokenSpec, ...] = (
    TokenSpec("ukey", "税务UKey 海润贸易", "112233", (CertSpec("hairun-ec", "hairun"),)),
    TokenSpec("golden-tax-disk", "金税盘 蓝海制造", "556677", (CertSpec("lanhai-rsa", "lanhai", key_type="RSA-2048"),)),
    TokenSpec("tax-control-disk", "税控盘 信达财税", "998877", (CertSpec("xinda-ec", "xinda"),)),
    TokenSpec("initial-pin", "税务UKey 初心科技", INITIAL_PIN, (CertSpec("chuxin-ec", "chuxin"),)),
    TokenSpec(
        "two-certs",
        "税务UKey 双正物流",
        "246810",
        (
            CertSpec("shuangzheng-ec", "shuangzheng"),
            CertSpec("shuangzheng-rsa", "shuangzheng", key_type="RSA-2048"),
        ),
    ),
    TokenSpec("agency-no-clients", "税务UKey 恒信记账", "112244", (CertSpec("hengxin-ec", "hengxin"),)),
    TokenSpec(
        "variants",
        "税务UKey 测试变体",
        "135790",
        (
            CertSpec("p384", "testcase", key_type="EC-P384"),
            CertSpec("expired", "testcase", variant="expired"),
            CertSpec("not-yet-valid", "testcase", variant="not_yet_valid"),
            CertSpec("revoked", "testcase", variant="revoked"),
            CertSpec("untrusted", "testcase", variant="untrusted"),
            CertSpec("no-digital-signature", "testcase", variant="no_digital_signature"),
            CertSpec("bad-check-character", "badcheck"),
            CertSpec("no-private-key", "testcase", with_key=False),
            CertSpec("unparsable", "testcase", unparsable=True),
        ),
    ),
    TokenSpec(
        "final-try",
        "税务UKey 最后一次",
        "121212",
        (CertSpec("final-try-ec", "testcase"),),
        flags=CKF_USER_PIN_FINAL_TRY,
    ),
    TokenSpec(
        "locked",
        "税务UKey 已锁定",
        "343434",
        (CertSpec("locked-ec", "testcase"),),
        flags=CKF_USER_PIN_LOCKED,
    ),
)


# The embedded demo's media: what a taxpayer and an agency firm would have on the desk.
DEMO_TOKENS: tuple[TokenSpec, ...] = (
    TokenSpec("demo-enterprise", "税务UKey 初心科技", INITIAL_PIN, (CertSpec("chuxin-ec", "chuxin"),)),
    TokenSpec("demo-agency", "税务UKey 信达财税", "998877", (CertSpec("xinda-ec", "xinda"),)),
    TokenSpec("demo-tax-control-disk", "税控盘 海润贸易", "112233", (CertSpec("hairun-ec", "hairun"),)),
)


# --- SM2 media on the software SKF device (softskf) --------------------------------------------


@dataclass(frozen=True)
class SkfContainerSpec:
    name: str  # the container's name on the device
    cert: str  # stable fixture name of its certificate
    taxpayer: str  # key into TAXPAYERS
    kind: str = "SM2"  # "SM2" or "RSA"


@dataclass(frozen=True)
class SkfMediumSpec:
    """One application of one SKF device: a token to the agent."""

    name: str  # stable fixture name
    label: str  # DEVINFO.Label, at most 32 bytes of UTF-8
    serial: str
    pin: str
    containers: tuple[SkfContainerSpec, ...]
    app: str = "SM2"  # the tax UKey's client opens application SM2, container SM2CONTAINER0002
    max_tries: int = 6
    is_default: bool = False
    locked: bool = False


# The tax UKey's default certificate PIN, as its client code has it (public repository
# 330wanlu/1_mb_code, .../tax/cntax/module/cntax_common.c).
TAX_UKEY_DEFAULT_PIN = "12345678"
SKF_MEDIA: tuple[SkfMediumSpec, ...] = (
    SkfMediumSpec(
        "sm2-ukey", "税务UKey 海润贸易 SM2", "SKF-HAIRUN-0001", "Hr2026sm2",
        (SkfContainerSpec("SM2CONTAINER0002", "hairun-sm2", "hairun"),),
    ),
    SkfMediumSpec(
        "sm2-default-pin", "税务UKey 初心科技 SM2", "SKF-CHUXIN-0002", TAX_UKEY_DEFAULT_PIN,
        (SkfContainerSpec("SM2CONTAINER0002", "chuxin-sm2", "chuxin"),), is_default=True,
    ),
    SkfMediumSpec(
        "sm2-agency", "税务UKey 信达财税 SM2", "SKF-XINDA-0003", "Xd2026sm2",
        (SkfContainerSpec("SM2CONTAINER0002", "xinda-sm2", "xinda"),),
    ),
    SkfMediumSpec(
        "sm2-two-containers", "税务UKey 双正物流 SM2", "SKF-SHUANGZHENG-0004", "Sz2026sm2",
        (
            SkfContainerSpec("SM2CONTAINER0002", "shuangzheng-sm2", "shuangzheng"),
            SkfContainerSpec("RSACONTAINER0001", "shuangzheng-skf-rsa", "shuangzheng", kind="RSA"),
        ),
    ),
    SkfMediumSpec(
        "sm2-locked", "税务UKey 已锁定 SM2", "SKF-LOCKED-0005", "Lk2026sm2",
        (SkfContainerSpec("SM2CONTAINER0002", "locked-sm2", "testcase"),), locked=True,
    ),
)  # fmt: skip

# The demo's SM2 medium: a tax UKey still on its default PIN, as it comes from the tax bureau.
DEMO_SKF_MEDIA: tuple[SkfMediumSpec, ...] = (
    SkfMediumSpec(
        "demo-sm2-ukey", "税务UKey 蓝海制造 SM2", "SKF-DEMO-LANHAI", TAX_UKEY_DEFAULT_PIN,
        (SkfContainerSpec("SM2CONTAINER0002", "lanhai-sm2", "lanhai"),), is_default=True,
    ),
)  # fmt: skip
