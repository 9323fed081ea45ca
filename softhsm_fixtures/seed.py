"""The verifier's data for the fixture taxpayers: enterprises, persons, roles, agreements and
cross-region identities.

In the format of ``cert-verifier import`` (JSON). 青岛信达财税代理有限公司 (an agency) has
agreements with 海润贸易 (active), 蓝海制造 (active) and 双正物流 (terminated); 恒信记账
(also an agency) has none.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from softhsm_fixtures.taxpayers import TAXPAYERS

PERSONS: list[dict[str, Any]] = [
    {"personId": "p-zhang", "name": "张伟", "idNumber": "370202198001011234", "phones": ["13800000001"]},
    # two numbers (FAQ item 17): the default first; either may get the code
    {
        "personId": "p-wang",
        "name": "王秀英",
        "idNumber": "370211198502022345",
        "phones": ["13800000002", "13900000012"],
    },
    {"personId": "p-li", "name": "李娜", "idNumber": "370212199003033456", "phones": ["13800000003"]},
    {"personId": "p-zhao", "name": "赵敏", "idNumber": "370203198804044567", "phones": ["13800000004"]},
    {"personId": "p-chen", "name": "陈静", "idNumber": "370213199205055678", "phones": ["13800000005"]},
    {"personId": "p-liu", "name": "刘洋", "idNumber": "370214198706066789", "phones": ["13800000006"]},
    {"personId": "p-sun", "name": "孙欧阳明", "idNumber": "370215199107077890", "phones": ["13800000007"]},
    # no phone number (FAQ item 15: it was given to someone else): only 扫码验证
    {"personId": "p-zhou", "name": "周杰", "idNumber": "370216199308088901", "phones": []},
]
ROLES = [
    ("hairun", "p-zhang", "法定代表人"),
    ("hairun", "p-wang", "财务负责人"),
    ("hairun", "p-wang", "办税员"),
    ("lanhai", "p-li", "法定代表人"),
    ("lanhai", "p-zhou", "办税员"),
    ("chuxin", "p-chen", "办税员"),
    ("shuangzheng", "p-chen", "财务负责人"),
    ("xinda", "p-zhao", "办税员"),
    ("hengxin", "p-liu", "办税员"),
    ("testcase", "p-sun", "开票员"),
    ("badcheck", "p-sun", "开票员"),
]


TAX_AUTHORITIES = {"shuangzheng": "国家税务总局青岛市李沧区税务局", "lanhai": "国家税务总局青岛市市北区税务局"}
# 特定主体 (FAQ items 12, 20): 双正物流 is also registered under two other district bureaus
CROSS_REGION = [
    (
        "x-sz-huangdao",
        "shuangzheng",
        "跨区域报验户",
        "青岛双正物流有限公司（黄岛区报验户）",
        "国家税务总局青岛市黄岛区税务局",
    ),
    (
        "x-sz-jimo",
        "shuangzheng",
        "跨区税源户",
        "青岛双正物流有限公司（即墨区跨区税源户）",
        "国家税务总局青岛市即墨区税务局",
    ),
]


def verifier_records(today: dt.date | None = None) -> dict[str, Any]:
    today = today or dt.date.today()
    year = dt.timedelta(days=365)
    taxpayers = [t for t in TAXPAYERS.values() if t.key != "badcheck"]  # an invalid ID cannot be registered
    return {
        "enterprises": [
            {
                "taxpayerId": t.taxpayer_id,
                "name": t.name,
                "isAgency": t.is_agency,
                "taxAuthority": TAX_AUTHORITIES.get(t.key, "国家税务总局青岛市市南区税务局"),
            }
            for t in taxpayers
        ],
        "persons": PERSONS,
        "roles": [
            {"taxpayerId": TAXPAYERS[key].taxpayer_id, "personId": person, "role": role}
            for key, person, role in ROLES
            if key != "badcheck"
        ],
        "crossRegion": [
            {
                "identityId": identity_id,
                "taxpayerId": TAXPAYERS[key].taxpayer_id,
                "kind": kind,
                "name": name,
                "taxAuthority": authority,
            }
            for identity_id, key, kind, name, authority in CROSS_REGION
        ],
        "agreements": [
            {
                "agencyId": TAXPAYERS["xinda"].taxpayer_id,
                "clientId": TAXPAYERS[client].taxpayer_id,
                "validFrom": (today - year).isoformat(),
                "validTo": (today + year).isoformat(),
                "status": status,
            }
            for client, status in (("hairun", "active"), ("lanhai", "active"), ("shuangzheng", "terminated"))
        ],
    }
