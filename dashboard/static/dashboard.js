// Live progress of the campaigns table, and the cancel buttons. Values are written with textContent only:
// nothing from the server is ever parsed as HTML.
"use strict";

function formatPercent(value) { return value === null ? "-" : (100 * value).toFixed(1) + "%"; }
function formatRate(value) { return value === null ? "-" : value.toFixed(1); }
function formatDuration(seconds) {
  if (seconds === null) return "-";
  const total = Math.floor(seconds), h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), s = total % 60;
  return h ? `${h}h${String(m).padStart(2, "0")}m` : `${m}m${String(s).padStart(2, "0")}s`;
}

function updateRow(row, campaign) {
  const set = (field, text) => { const cell = row.querySelector(`[data-field="${field}"]`); if (cell) cell.textContent = text; };
  set("state", campaign.state);
  set("done", String(campaign.done));
  set("expected", String(campaign.expected));
  set("pass_rate", formatPercent(campaign.pass_rate));
  set("rollouts_per_second", formatRate(campaign.rollouts_per_second));
  set("eta_seconds", formatDuration(campaign.eta_seconds));
  set("infra_errors", String(campaign.infra_errors));
  const state = row.querySelector('[data-field="state"]');
  if (state) state.className = `state state-${campaign.state}`;
  const bar = row.querySelector('progress[data-field="fraction_done"]');
  if (bar) bar.value = campaign.fraction_done;
  if (campaign.state !== "running") { const button = row.querySelector("button.cancel"); if (button) button.remove(); }
}

async function refresh(table) {
  try {
    const reply = await fetch(table.dataset.source, { headers: { Accept: "application/json" } });
    if (!reply.ok) return;
    for (const campaign of await reply.json()) {
      const row = table.querySelector(`tr[data-campaign="${CSS.escape(campaign.campaign_id)}"]`);
      if (row) updateRow(row, campaign);
    }
  } catch (error) { /* the next poll tries again */ }
}

async function cancelCampaign(button) {
  const id = button.dataset.cancel;
  if (!window.confirm(`Cancel campaign ${id}? Batches not started yet will do nothing; stored records stay.`)) return;
  button.disabled = true;
  const reply = await fetch(`/campaigns/${encodeURIComponent(id)}/cancel`, { method: "POST", headers: { "X-Verifarm-Action": "cancel" } });
  if (reply.ok) {
    const row = button.closest("tr");
    updateRow(row, await reply.json());
  } else {
    button.disabled = false;
    button.textContent = "cancel failed";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const button of document.querySelectorAll("button.cancel")) button.addEventListener("click", () => cancelCampaign(button));
  const table = document.querySelector("table.live");
  if (table) {
    const seconds = parseFloat(document.body.dataset.refreshSeconds) || 2;
    setInterval(() => refresh(table), seconds * 1000);
  }
});
