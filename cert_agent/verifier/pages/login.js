// The login page: 企业业务 / 代理业务 certificate login through the local agent.
import {
  api,
  connectAgent,
  forgetPairing,
  showError,
  certificateLabel,
  choiceButton,
  explainAgentFailure,
  localNetworkPermission,
  postThenHome,
} from "/static/pages/common.js";

let kind = "enterprise";
let agent = null;
let attemptId = null;
const $ = (id) => document.getElementById(id);

function show(step) {
  scanWaits++; // leaving the scan step (or showing a new code) ends the page's wait for the app
  const steps = ["step-certificate", "step-person", "step-phone", "step-code", "step-scan", "step-identity", "step-client"];
  for (const id of steps) {
    $(id).classList.toggle("hidden", id !== step);
  }
}

async function refreshCertificates() {
  const { tokens, problems } = await agent.listCertificates();
  showMediaProblems(problems ?? []);
  const select = $("certificate");
  const previous = select.value;
  select.innerHTML = "";
  for (const token of tokens) {
    for (const cert of token.certificates) {
      if (!cert.info || !cert.hasPrivateKey) continue;
      const option = document.createElement("option");
      option.value = JSON.stringify({ tokenId: token.tokenId, certId: cert.certId });
      option.textContent = certificateLabel(token, cert);
      option.dataset.pinState = token.pinState;
      option.dataset.pinPad = token.pinPad ? "1" : "";
      option.dataset.notAfter = cert.info.notAfter;
      select.append(option);
    }
  }
  if ([...select.options].some((o) => o.value === previous)) select.value = previous;
  if (!select.options.length) {
    const option = document.createElement("option");
    option.textContent = "未检测到证书，请插入税务UKey、金税盘或税控盘";
    option.value = "";
    select.append(option);
  }
  describeSelected();
}

/** A card in a reader with no driver for it: say so, and which driver when the agent knows. */
function showMediaProblems(problems) {
  const missing = problems.filter((p) => p.error?.code === "MEDIUM_DRIVER_MISSING");
  const box = $("media-problem");
  box.classList.toggle("hidden", !missing.length);
  box.textContent = missing
    .map((p) =>
      p.driver
        ? `已检测到证书介质（${p.reader}），但未安装其驱动程序：请安装“${p.driver.name}”。`
        : `已检测到证书介质（${p.reader}），但未安装其驱动程序，请安装介质厂商提供的驱动程序。`,
    )
    .join(" ");
}

function describeSelected() {
  const option = $("certificate").selectedOptions[0];
  const hint = $("certificate-hint");
  const locked = option?.dataset.pinState === "locked";
  const pinPad = Boolean(option?.dataset.pinPad);
  // a locked PIN is not asked for; a reader with a keypad asks for it itself
  $("pin").classList.toggle("hidden", locked || pinPad);
  document.querySelector('label[for="pin"]')?.classList.toggle("hidden", locked || pinPad);
  $("login").disabled = locked;
  if (!option || !option.value) {
    hint.textContent = "";
    return;
  }
  const states = { locked: "证书密码已锁定", final_try: "仅剩最后一次尝试机会", count_low: "近期有错误的密码尝试" };
  const until = new Date(option.dataset.notAfter).toLocaleDateString("zh-CN");
  hint.textContent =
    `有效期至 ${until}` +
    (states[option.dataset.pinState] ? `；${states[option.dataset.pinState]}` : "") +
    (pinPad && !locked ? "；点击登录后，请在读卡器的密码键盘上输入证书密码" : "");
}

async function login() {
  showError("error", null);
  const selected = $("certificate").value;
  const pinPad = Boolean($("certificate").selectedOptions[0]?.dataset.pinPad);
  const pin = $("pin").value;
  if (!selected) return showError("error", { message: "请先插入证书介质并选择证书。" });
  if (!pin && !pinPad) return showError("error", { message: "请输入证书密码。" });
  $("login").disabled = true;
  try {
    const { nonce } = await api("/api/challenge", {});
    const { tokenId, certId } = JSON.parse(selected);
    const request = pinPad ? { tokenId, certId, challengeNonce: nonce } : { tokenId, certId, pin, challengeNonce: nonce };
    const { authToken, initialPin } = await agent.authenticate(request);
    const mustChange = initialPin || $("certificate").selectedOptions[0]?.dataset.pinState === "to_be_changed";
    $("initial-pin").classList.toggle("hidden", !mustChange);
    if (mustChange) sessionStorage.setItem("initialPin", "1");
    const step = await api("/api/login/certificate", { kind, authToken, nonce });
    attemptId = step.attemptId;
    $("enterprise-name").textContent = step.enterprise.name;
    persons = new Map(step.persons.map((person) => [person.personId, person]));
    $("persons").replaceChildren(
      ...step.persons.map((person) =>
        choiceButton(
          person.name,
          `${person.roles.join("、")}　${person.phones.join("、") || "手机号码为空，请扫码验证"}`,
          { personId: person.personId },
          () => choosePerson(person),
        ),
      ),
    );
    show("step-person");
  } catch (error) {
    showError("error", error);
  } finally {
    $("pin").value = ""; // the PIN is typed again for every attempt, never kept in the page
    $("login").disabled = false;
  }
}

let chosenPerson = null;
let chosenPhone = 0;

/** A person is chosen: the SMS code to their one number, a choice of number when they have
 * several (FAQ item 17), or 扫码验证 when they have none (item 15). */
function choosePerson(person) {
  chosenPerson = person.personId;
  const scan = person.methods.includes("scan"); // a bureau may offer SMS only
  $("use-scan").classList.toggle("hidden", !scan);
  $("phone-use-scan").classList.toggle("hidden", !scan);
  if (!person.methods.includes("sms")) {
    if (scan) return showScan(person.personId);
    return showError("error", { message: "您的手机号码为空，无法接收短信验证码，请联系主管税务机关维护手机号码。" });
  }
  if (person.phones.length < 2) return sendCode(person.personId, 0);
  $("phones").replaceChildren(
    ...person.phones.map((masked, index) =>
      choiceButton(masked, index === 0 ? "默认号码" : "", { phoneIndex: String(index) }, () =>
        sendCode(person.personId, index),
      ),
    ),
  );
  show("step-phone");
}
let persons = new Map();
let countdown = null;
let scanWaits = 0; // the number of the page's current wait for the app; any other wait stops

/** The resend button counts down the seconds the verifier asks to wait (resendIn / retryAfter). */
function waitToResend(seconds) {
  clearInterval(countdown);
  const button = $("resend");
  let left = Math.max(0, Math.ceil(seconds));
  const tick = () => {
    button.disabled = left > 0;
    button.textContent = left > 0 ? `重新发送验证码（${left} 秒）` : "重新发送验证码";
    if (left-- <= 0) clearInterval(countdown);
  };
  tick();
  countdown = setInterval(tick, 1000);
}

let personWait = null;

/** On the person step, a send refused for now (the waits are per person and per number, so a
 * person logging in again soon meets them): count the seconds down in the message, the persons'
 * buttons held, and say when a code may be asked for again. */
function waitAtPersons(seconds) {
  clearInterval(personWait);
  const buttons = [...document.querySelectorAll("#persons button, #phones button")];
  let left = Math.max(1, Math.ceil(seconds));
  const tick = () => {
    for (const button of buttons) button.disabled = left > 0;
    if (left > 0) showError("error", { message: `验证码发送过于频繁，请 ${left} 秒后再试` });
    else {
      showError("error", { message: "现在可以重新获取验证码，请再次选择办税人员" });
      clearInterval(personWait);
    }
    left--;
  };
  tick();
  personWait = setInterval(tick, 1000);
}

async function sendCode(personId, phoneIndex = chosenPhone) {
  showError("error", null);
  chosenPerson = personId;
  chosenPhone = phoneIndex;
  const atPersons = $("step-code").classList.contains("hidden");
  try {
    const { sentTo, resendIn } = await api("/api/login/sms", { attemptId, personId, phoneIndex });
    clearInterval(personWait);
    $("sent-to").textContent = sentTo;
    show("step-code");
    waitToResend(resendIn);
  } catch (error) {
    showError("error", error);
    if (error.code === "SMS_RATE_LIMITED") {
      if (atPersons) waitAtPersons(error.details.retryAfter);
      else waitToResend(error.details.retryAfter);
    }
  }
}

async function verify() {
  showError("error", null);
  $("verify").disabled = true;
  try {
    await afterSecondFactor(await api("/api/login/verify", { attemptId, code: $("code").value.trim() }));
  } catch (error) {
    showError("error", error);
  } finally {
    $("verify").disabled = false;
  }
}

/** What follows a passed second factor, the same after an SMS code and after 扫码验证. */
async function afterSecondFactor(result) {
  if (result.identityChoices) {
    // 特定主体: the enterprise itself or one of its cross-region identities
    $("identities").replaceChildren(
      ...result.identityChoices.map((identity) =>
        choiceButton(`${identity.kind}：${identity.name}`, identity.taxAuthority, { identityId: identity.identityId }, () =>
          chooseIdentity(identity.identityId),
        ),
      ),
    );
    show("step-identity");
    return;
  }
  if (!result.clients) {
    location.href = "/home";
    return;
  }
  $("clients").replaceChildren(
    ...result.clients.map((client) =>
      choiceButton(client.name, client.taxpayerId, { clientId: client.taxpayerId }, () => chooseClient(client.taxpayerId)),
    ),
  );
  show("step-client");
}

const SCAN_MIN_INTERVAL_MS = 10000; // a waiting page asks at most once per 10 s (each ask waits up to 25 s)

/** 扫码验证: a QR code for the person's tax app; the page then waits for the app's answer. */
async function showScan(personId) {
  showError("error", null);
  chosenPerson = personId;
  const person = persons.get(personId);
  const why = $("scan-why");
  const noPhone = person && !person.methods.includes("sms");
  why.textContent = noPhone
    ? "您的手机号码为空，无法接收短信验证码，请使用扫码验证。登录后可在【账户中心】—【个人信息管理】中添加手机号码。"
    : "";
  why.classList.toggle("hidden", !noPhone);
  $("use-sms").classList.toggle("hidden", Boolean(noPhone));
  try {
    const { qrImage, expiresIn } = await api("/api/login/scan", { attemptId, personId });
    show("step-scan");
    $("qr").src = qrImage; // an image the verifier rendered: no script, no markup from it
    $("qr").classList.remove("spent");
    $("scan-state").textContent = `二维码 ${Math.round(expiresIn / 60)} 分钟内有效，扫码并刷脸通过后本页自动继续`;
    document.body.dataset.scan = "shown";
    await waitForApp(scanWaits);
  } catch (error) {
    showError("error", error);
  }
}

/** The long poll: one request at a time, at most one per SCAN_MIN_INTERVAL_MS, until the app
 * answers, the code expires or the person leaves the step. */
async function waitForApp(wait) {
  while (wait === scanWaits) {
    const asked = Date.now();
    let result;
    try {
      result = await api("/api/login/scan/wait", { attemptId });
    } catch (error) {
      if (wait !== scanWaits) return;
      showError("error", error);
      $("scan-state").textContent = error.code === "SCAN_EXPIRED" ? "二维码已过期，请点击“刷新二维码”" : "请点击“刷新二维码”后重新扫码";
      document.body.dataset.scan = error.code;
      $("qr").classList.add("spent"); // this code is answered or past its time: a new one is needed
      return;
    }
    if (wait !== scanWaits) return;
    if (!result.pending) {
      document.body.dataset.scan = "confirmed";
      await afterSecondFactor(result);
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, SCAN_MIN_INTERVAL_MS - (Date.now() - asked))));
  }
}

/** 返回: the attempt ends at the verifier (a code it showed is answered no more). */
async function back() {
  const ending = attemptId;
  attemptId = null;
  show("step-certificate");
  showError("error", null);
  if (ending) await api("/api/login/cancel", { attemptId: ending }).catch(() => {});
}

function chooseIdentity(identityId) {
  return postThenHome("/api/login/identity", { attemptId, identityId });
}

function chooseClient(clientId) {
  return postThenHome("/api/login/client", { attemptId, clientId });
}

function selectTab(button) {
  kind = button.dataset.kind;
  for (const tab of document.querySelectorAll(".tabs button")) tab.classList.toggle("active", tab === button);
  show("step-certificate");
  showError("error", null);
}

async function start() {
  for (const tab of document.querySelectorAll(".tabs button")) tab.addEventListener("click", () => selectTab(tab));
  $("login").addEventListener("click", login);
  $("resend").addEventListener("click", () => sendCode(chosenPerson));
  $("use-scan").addEventListener("click", () => showScan(chosenPerson));
  $("use-sms").addEventListener("click", () => choosePerson(persons.get(chosenPerson)));
  $("phone-use-scan").addEventListener("click", () => showScan(chosenPerson));
  $("refresh-scan").addEventListener("click", () => showScan(chosenPerson));
  for (const button of document.querySelectorAll("button.back")) button.addEventListener("click", back);
  $("pin").addEventListener("keydown", (e) => e.key === "Enter" && login());
  $("verify").addEventListener("click", verify);
  $("certificate").addEventListener("change", describeSelected);
  // A tax bureau page is public https: there, connecting makes the browser ask the user for the
  // Local Network Access permission, so it waits for their click. (An http page can only be a
  // loopback development page, which the browser never asks about.)
  if (location.protocol === "https:" && (await localNetworkPermission()) === "prompt") {
    $("allow-agent").classList.remove("hidden");
    document.body.dataset.ready = "ask-permission";
    await new Promise((resolve) => $("allow-agent-button").addEventListener("click", resolve, { once: true }));
    $("allow-agent").classList.add("hidden");
  }
  try {
    agent = await connectAgent();
  } catch (error) {
    await explainAgentFailure($("agent-missing"), error);
    if (error.code === "AGENT_IMPOSTOR") {
      $("pin").disabled = true; // nothing typed here can reach the impostor
      $("repair-agent").classList.remove("hidden");
      $("repair-agent").addEventListener("click", () => {
        forgetPairing();
        location.reload();
      });
    }
    $("login").disabled = true;
    document.body.dataset.ready = "agent-missing";
    return;
  }
  agent.on("tokenInserted", refreshCertificates);
  agent.on("tokenRemoved", refreshCertificates);
  agent.on("tokenChanged", refreshCertificates);
  agent.on("cardInserted", refreshCertificates);
  agent.on("cardRemoved", refreshCertificates);
  agent.on("mediumWithoutDriver", refreshCertificates);
  await refreshCertificates();
  document.body.dataset.ready = "yes";
}

start();
