"""The texts of every error, keyed by its stable code: Simplified Chinese for the taxpayer
(``message``) and English for logs and support (``messageEn``). One catalog for the whole
product, so a text is changed in one place and no code is without its words."""

from __future__ import annotations

MESSAGES: dict[str, tuple[str, str]] = {
    "INTERNAL_ERROR": (
        "证书助手内部错误",
        "internal error",
    ),
    "MEDIUM_DRIVER_MISSING": (
        "已检测到证书介质，但未安装其驱动程序，请安装介质厂商提供的驱动程序",
        "a certificate medium is in a reader, but no driver (PKCS#11 module) for it is installed",
    ),
    "MODULE_LOAD_FAILED": (
        "无法加载证书介质驱动（PKCS#11 模块或 SKF 库），请确认驱动已安装",
        "the library (PKCS#11 module or SKF library) could not be loaded",
    ),
    "TOKEN_NOT_FOUND": (
        "未找到指定的证书介质，请插入税务UKey、金税盘或税控盘",
        "no token matches the request",
    ),
    "TOKEN_AMBIGUOUS": (
        "找到多个同名的证书介质，请只插入一个",
        "more than one token matches the request",
    ),
    "TOKEN_NOT_PRESENT": (
        "证书介质未插入",
        "the token is not present",
    ),
    "DEVICE_REMOVED": (
        "证书介质在操作过程中被拔出，请重新插入后重试",
        "the token was removed during the operation",
    ),
    "DEVICE_ERROR": (
        "证书介质出现故障，请重新插入后重试",
        "the token reported a device error",
    ),
    "TOKEN_WRITE_PROTECTED": (
        "证书介质处于写保护状态，无法修改证书密码",
        "the token is write-protected",
    ),
    "CERTIFICATE_NOT_FOUND": (
        "证书介质中未找到该证书",
        "the certificate is not on the token",
    ),
    "CERTIFICATE_UNPARSABLE": (
        "证书格式无法识别",
        "the certificate could not be parsed",
    ),
    "PRIVATE_KEY_NOT_FOUND": (
        "该证书没有对应的私钥，无法用于登录",
        "the certificate has no private key on the token",
    ),
    "MECHANISM_NOT_SUPPORTED": (
        "证书介质不支持所需的签名算法",
        "the token supports no mechanism for this signature algorithm",
    ),
    "PKCS11_ERROR": (
        "证书介质操作失败",
        "the PKCS#11 call failed",
    ),
    "SKF_ERROR": (
        "证书介质操作失败",
        "the SKF call failed",
    ),
    "SKF_GARBAGE": (
        "证书介质驱动返回了无法识别的数据，请重新插入证书介质或重新安装其驱动程序",
        "the SKF library returned malformed data",
    ),
    "KEY_UNUSABLE": (
        "该证书的密钥类型不受支持，无法用于登录",
        "the certificate's key is of a type the agent cannot sign with",
    ),
    "PIN_INCORRECT": (
        "证书密码错误",
        "the PIN is incorrect",
    ),
    "PIN_LOCKED": (
        "证书密码输错次数过多，证书已锁定，请联系主管税务机关或介质服务单位解锁",
        "the PIN is locked",
    ),
    "PIN_LEN_RANGE": (
        "证书密码长度不符合证书介质的要求",
        "the token refused the PIN length",
    ),
    "PIN_EXPIRED": (
        "证书密码已过期，请先修改证书密码",
        "the PIN has expired and must be changed",
    ),
    "PIN_POLICY": (
        "新证书密码不符合要求",
        "the new PIN does not meet the policy",
    ),
    "PIN_REQUIRED": (
        "请输入证书密码",
        "a PIN is required",
    ),
    "TOKEN_TIMEOUT": (
        "证书介质长时间无响应，请拔出后重新插入",
        "the token did not answer in time",
    ),
    "WORKER_FAILED": (
        "证书介质驱动异常退出，请重试",
        "the process serving the token's driver stopped unexpectedly",
    ),
    "BAD_JSON": (
        "请求格式错误",
        "the message is not a JSON object",
    ),
    "BAD_REQUEST": (
        "请求参数错误",
        "a request field is missing or invalid",
    ),
    "UNKNOWN_METHOD": (
        "证书助手不支持该操作，请升级证书助手",
        "the agent does not know this method",
    ),
    "UNSUPPORTED_PROTOCOL": (
        "证书助手版本与页面不兼容，请升级证书助手",
        "the page and the agent share no protocol version",
    ),
    "RATE_LIMITED": (
        "证书密码错误次数过多，请稍后再试",
        "too many wrong PINs; try again later",
    ),
    "PIN_TRIES_RESERVED": (
        "证书密码已连续输错多次，为防止证书介质被锁定，本页暂不提交证书密码。"
        "请确认密码后，在本机运行 cert-agent verify-pin 验证一次证书密码",
        "the PIN was not presented: the medium's last try (or this site's share of its tries) "
        "is kept for the user's own cert-agent verify-pin",
    ),
    "AGENT_ALREADY_RUNNING": (
        "证书助手已在运行（每个用户只能运行一个）；修改证书密码请在电子税务局【账户中心】—【税务数字证书】中进行，或先停止证书助手",
        "cert-agent is already running for this user",
    ),
    "LISTEN_FAILED": (
        "证书助手无法占用本机端口，端口已被其他程序占用",
        "the agent cannot hold every loopback address on any of its ports",
    ),
    "PRIVATE_DIR_UNSAFE": (
        "证书助手的私有目录不安全（不属于当前用户或是链接），请设置 XDG_RUNTIME_DIR 或联系管理员",
        "a private folder or file of the agent is a link, another user's, or cannot be made",
    ),
    "ORIGIN_REFUSED": (
        "该网站未被允许使用证书助手",
        "this site may not use the agent",
    ),
    "USER_REFUSED": (
        "该连接来自本机的其他用户，证书助手只为启动它的用户服务",
        "the connection comes from another local user; the agent serves only its own user",
    ),
    "REQUEST_TIMEOUT": (
        "请求超时，请重试",
        "the request body did not arrive in time",
    ),
    "TOKEN_INVALID": (
        "登录凭证无效，请重新登录",
        "the authentication token is invalid",
    ),
    "TOKEN_MALFORMED": (
        "登录凭证无效，请重新登录",
        "a token field is missing, empty, of the wrong type or undecodable",
    ),
    "TOKEN_BAD_FORMAT": (
        "登录凭证无效，请重新登录",
        "the token format is not web-eid:1",
    ),
    "CERT_BAD_KEY_USAGE": (
        "该证书不能用于登录（缺少数字签名用途）",
        "the certificate has no digitalSignature key usage",
    ),
    "CERT_BAD_EKU": (
        "该证书不能用于登录（扩展密钥用途不含客户端认证）",
        "the certificate's extended key usage lacks clientAuth",
    ),
    "CERT_DISALLOWED_POLICY": (
        "该证书的证书策略不允许用于登录",
        "the certificate carries a disallowed policy",
    ),
    "CERT_EXPIRED": (
        "证书已过期，请到主管税务机关或介质服务单位更新证书",
        "the certificate (or its issuer) has expired",
    ),
    "CERT_NOT_YET_VALID": (
        "证书尚未生效",
        "the certificate (or its issuer) is not yet valid",
    ),
    "CERT_UNTRUSTED": (
        "该证书不是税务机关认可的证书",
        "the certificate does not chain to a trusted authority",
    ),
    "CERT_REVOKED": (
        "证书已被吊销，请联系主管税务机关",
        "the certificate has been revoked",
    ),
    "REVOCATION_UNAVAILABLE": (
        "暂时无法核验证书状态，请稍后再试",
        "the revocation status could not be established",
    ),
    "CERT_STATUS_UNKNOWN": (
        "证书状态未知，请联系主管税务机关",
        "the OCSP responder does not know the certificate",
    ),
    "OCSP_RESPONSE_INVALID": (
        "暂时无法核验证书状态，请稍后再试",
        "the OCSP answer could not be trusted",
    ),
    "UNSUPPORTED_ALGORITHM": (
        "登录凭证无效，请重新登录",
        "the signature algorithm is not allowed",
    ),
    "SM2_WRONG_ID": (
        "证书签名校验失败：签名未使用国密标准默认用户标识（1234567812345678）",
        "the SM2 signature was made with another user ID than the GM/T 0009 default",
    ),
    "ALGORITHM_KEY_MISMATCH": (
        "签名算法与证书密钥类型不符",
        "the token's algorithm does not fit the certificate's key (SM2 and ECDSA/RSA)",
    ),
    "SM2_UNAVAILABLE": (
        "本服务所在系统的 OpenSSL 不支持国密 SM2 算法，无法校验国密证书",
        "an SM2 trust anchor is configured, but the system's libcrypto is not OpenSSL 3 with SM2",
    ),
    "SIGNATURE_INVALID": (
        "登录凭证无效，请重新登录",
        "the signature does not verify for this origin and challenge",
    ),
    "CHALLENGE_INVALID": (
        "登录挑战已失效（已使用、已过期或不存在），请重新登录",
        "the challenge nonce is unknown, used or expired",
    ),
    "TAXPAYER_ID_INVALID": (
        "证书中的纳税人识别号无效",
        "the certificate carries no valid taxpayer ID",
    ),
    "TAXPAYER_UNKNOWN": (
        "未查询到该证书对应的纳税人信息",
        "no taxpayer is registered for this certificate",
    ),
    "NOT_AN_AGENCY": (
        "该证书不属于代理机构，请在“企业业务”中登录",
        "the certificate does not belong to an agency",
    ),
    "NO_RELATIONSHIP": (
        "未查询到您与该企业的关联关系信息",
        "no relationship with this enterprise is on record",
    ),
    "LOGIN_EXPIRED": (
        "登录已超时，请重新登录",
        "the login attempt is unknown or has expired",
    ),
    "SMS_CODE_INCORRECT": (
        "短信验证码错误",
        "the SMS code is wrong or has expired",
    ),
    "ACCOUNT_LOCKED": (
        "今日连续验证失败已达 5 次，账号已锁定",
        "the account is locked until midnight China Standard Time",
    ),
    "NOT_LOGGED_IN": (
        "请先登录",
        "no valid session",
    ),
    "BODY_TOO_LARGE": (
        "请求内容过大",
        "the request body is too large",
    ),
    "SMS_RATE_LIMITED": (
        "验证码发送过于频繁，请稍后再试",
        "too many SMS codes were sent; try again later",
    ),
    "SMS_UNAVAILABLE": (
        "短信验证码暂时无法发送，请稍后再试",
        "the SMS gateway did not take the message",
    ),
    "PHONE_MISSING": (
        "您的手机号码为空，无法接收短信验证码。请选择“扫码验证”，用青岛税务APP首页右上角的“扫一扫”刷脸验证；登录后可在【账户中心】—【个人信息管理】中添加手机号码",
        "no phone number is on record for this person: use scan verification",
    ),
    "SCAN_WRONG_PERSON": (
        "扫码验证的人员与所选办税人员不一致",
        "the app verified a person other than the one chosen",
    ),
    "SCAN_FACE_FAILED": (
        "刷脸验证未通过",
        "the app's face check did not pass",
    ),
    "SCAN_EXPIRED": (
        "二维码已过期，请刷新二维码后重新扫描",
        "the QR code's request has expired",
    ),
    "SCAN_UNKNOWN": (
        "二维码无效，请扫描电子税务局页面上显示的二维码",
        "no such scan request",
    ),
    "SCAN_REPLAYED": (
        "该二维码已使用，请刷新二维码后重新扫描",
        "the scan request was answered already",
    ),
    "SCAN_NOT_CURRENT": (
        "该登录已取消、已完成或已显示新的二维码，请扫描页面上当前的二维码",
        "the scan request is not the one its login waits for",
    ),
    "IDENTITY_SWITCH_REFUSED": (
        "本次证书登录不能切换到该企业，请使用该企业的税务数字证书登录",
        "this login may not switch to that enterprise (or an agency login switches nothing)",
    ),
    "APP_UNAUTHORIZED": (
        "应用未登记或凭据无效",
        "the app is not registered, is revoked, or its secret is wrong",
    ),
    "CROSS_SITE_REQUEST": (
        "请求来源不是本网站，已拒绝",
        "the request does not come from this site's own pages",
    ),
    "UNSUPPORTED_MEDIA_TYPE": (
        "请求格式错误",
        "the request body must be application/json",
    ),
    "STORE_UNAVAILABLE": (
        "系统繁忙，请稍后再试",
        "the database is busy or unavailable; nothing was changed",
    ),
    "METHOD_NOT_ALLOWED": (
        "请求方式错误",
        "this endpoint does not take that HTTP method",
    ),
    "NOT_FOUND": (
        "请求的内容不存在",
        "no such resource",
    ),
}
