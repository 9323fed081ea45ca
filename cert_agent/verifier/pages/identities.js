// 【账户中心】—【身份切换】 (FAQ items 31, 32): the person's roles in this enterprise and in the
// others they are linked to; switching changes the session's enterprise and role, no new login.
import { api, choiceButton, postThenHome } from "/static/pages/common.js";
const $ = (id) => document.getElementById(id);

async function load() {
  const [me, choices] = await Promise.all([api("/api/session"), api("/api/session/switch")]);
  $("current").textContent = `当前：${me.enterprise.name}${me.role ? `（${me.role}）` : ""}`;
  $("enterprises").replaceChildren(
    ...choices.enterprises.flatMap((enterprise) =>
      enterprise.roles.map((role) => {
        const current = enterprise.taxpayerId === choices.current.taxpayerId && role === choices.current.role;
        const note = current ? "当前身份" : enterprise.allowed ? enterprise.taxpayerId : "需使用该企业的证书登录";
        const button = choiceButton(`${enterprise.name} — ${role}`, note, { taxpayerId: enterprise.taxpayerId, role }, () =>
          switchTo(enterprise.taxpayerId, role),
        );
        button.disabled = current || !enterprise.allowed;
        return button;
      }),
    ),
  );
  $("scope").textContent =
    choices.scope === "linked" ? "" : "证书登录只能在证书所属企业内切换身份；切换到其他企业，请使用该企业的税务数字证书登录。";
  document.body.dataset.ready = "yes";
}

function switchTo(taxpayerId, role) {
  return postThenHome("/api/session/switch", { taxpayerId, role });
}

load().catch(() => (location.href = "/"));
