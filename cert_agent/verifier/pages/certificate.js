// The account centre's 税务数字证书 page: certificate details and PIN change through the agent.
import { api, connectAgent, showError, explainAgentFailure, certificateLabel, fillDetails } from "/static/pages/common.js";
const $ = (id) => document.getElementById(id);
let agent, tokens = [];
// What each algorithm the agent signs with is called in the account centre (SM2: 国密).
const ALGORITHM_NAMES = {
  SM2SM3: "SM2（国密 SM2/SM3）", ES256: "ECDSA P-256 / SHA-256", ES384: "ECDSA P-384 / SHA-384",
  ES512: "ECDSA P-521 / SHA-512", RS256: "RSA / SHA-256", RS384: "RSA / SHA-384", RS512: "RSA / SHA-512",
  PS256: "RSA-PSS / SHA-256", PS384: "RSA-PSS / SHA-384", PS512: "RSA-PSS / SHA-512",
};
try { await api("/api/session"); } catch { location.href = "/"; }

function describe() {
  const [tokenId, certId] = ($("certificate").value || "|").split("|");
  const token = tokens.find((t) => t.tokenId === tokenId);
  const cert = token?.certificates.find((c) => c.certId === certId);
  if (!cert) { fillDetails($("details"), []); return; }
  const i = cert.info;
  const rows = [
    ["证书介质", `${token.medium}（${token.label}）`], ["证书主体", i.subjectCN], ["纳税人识别号", i.taxpayerId ?? "—"],
    ["颁发机构", i.issuer], ["证书序列号", i.serialNumber],
    ["有效期", `${new Date(i.notBefore).toLocaleDateString("zh-CN")} 至 ${new Date(i.notAfter).toLocaleDateString("zh-CN")}`],
    ["密钥", `${i.keyType} ${i.keySize}`],
    ["签名算法", ALGORITHM_NAMES[i.algorithm] ?? i.algorithm ?? "不支持"],
  ];
  fillDetails($("details"), rows);
}

async function refresh() {
  ({ tokens } = await agent.listCertificates());
  const select = $("certificate");
  select.innerHTML = "";
  for (const token of tokens) for (const cert of token.certificates) {
    if (!cert.info) continue;
    const option = document.createElement("option");
    option.value = `${token.tokenId}|${cert.certId}`;
    option.textContent = certificateLabel(token, cert);
    select.append(option);
  }
  describe();
}

$("certificate").addEventListener("change", describe);
$("change").addEventListener("click", async () => {
  showError("error", null);
  $("done").classList.add("hidden");
  const [tokenId] = ($("certificate").value || "|").split("|");
  if (!tokenId) return showError("error", { message: "请先插入证书。" });
  if ($("new-pin").value !== $("new-pin-again").value) return showError("error", { message: "两次输入的新证书密码不一致。" });
  try {
    await agent.changePin({ tokenId, oldPin: $("old-pin").value, newPin: $("new-pin").value });
    for (const id of ["old-pin", "new-pin", "new-pin-again"]) $(id).value = "";
    sessionStorage.removeItem("initialPin");
    $("done").classList.remove("hidden");
  } catch (error) {
    showError("error", error);
  }
});

try {
  agent = await connectAgent();
  agent.on("tokenInserted", refresh);
  agent.on("tokenRemoved", refresh);
  await refresh();
  document.body.dataset.ready = "yes";
} catch (error) {
  await explainAgentFailure($("agent-missing"), error);
  document.body.dataset.ready = "agent-missing";
}
