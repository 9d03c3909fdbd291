// The monitoring app: reads the record with the SMART client (the access token stays in this page's memory:
// see smart.js), sends what it read to the service, which answers the monitoring state computed by its own
// rules, and draws it. Its texts come from the service too (texts.js), in the browser's language.
import { smart, forgetStoredState } from "./smart.js";
import { renderState, renderError } from "./render.js";
import { loadTexts, language, t } from "./texts.js";

const MAX_PAGES = 50;

function ticketFrom(client) {
  // the card link's appContext (CDS Hooks): {"jakCdsTicket": "..."} when the service requires authentication
  const raw = client.state && client.state.tokenResponse && client.state.tokenResponse.appContext;
  if (!raw) return null;
  try {
    const context = typeof raw === "string" ? JSON.parse(raw) : raw;
    return context && typeof context.jakCdsTicket === "string" ? context.jakCdsTicket : null;
  } catch (_) {
    return null;
  }
}

class NotAuthorised extends Error {}

async function json(url, options) {
  const response = await fetch(url, { credentials: "omit", ...options });
  const body = await response.json().catch(() => null);
  if (response.status === 401) throw new NotAuthorised("401");
  if (!response.ok) {
    const why = body && body.issue && body.issue[0] && body.issue[0].diagnostics;
    throw new Error(why || t("httpStatus", { status: response.status }));
  }
  return body;
}

async function readRecord(client, patientId, templates) {
  const prefetch = {};
  await Promise.all(Object.entries(templates).map(async ([key, template]) => {
    if (!template.includes("{{context.patientId}}") && /\{\{/.test(template)) return;
    const query = template.split("{{context.patientId}}").join(encodeURIComponent(patientId));
    if (/\{\{/.test(query)) return;          // a token this app cannot fill: the service says the data is missing
    try {
      const resources = await client.request(query, { pageLimit: MAX_PAGES, flat: true });
      prefetch[key] = (Array.isArray(resources) ? resources : [resources]).filter((r) => r && r.resourceType);
    } catch (_) {
      // not sent: the service reports this part of the record as unavailable
    }
  }));
  return prefetch;
}

async function main() {
  const texts = loadTexts();
  const ready = smart.ready();
  ready.catch(() => {});             // handled below, once the texts are there
  try {
    await texts;
  } catch (error) {
    // the service did not answer its texts: say what failed as it is (there is no language to say it in)
    renderError(error.message);
    return;
  }
  let client;
  try {
    client = await ready;
  } catch (error) {
    const message = error && error.message ? error.message : "";
    if (/\(re\)launch/.test(message)) {
      // no launch state: opened directly, or reloaded (the SMART session lives in the page's memory only)
      renderError(t("noSession"));
    } else {
      renderError(t("launchIncomplete", { why: message || t("unknownError") }));
    }
    return;
  }
  forgetStoredState(client);
  const patientId = client.patient && client.patient.id;
  if (!patientId) {
    renderError(t("noPatient"));
    return;
  }
  const ticket = ticketFrom(client);
  // the monitoring state in the language of the texts (the service negotiates it the same way; this makes sure)
  const headers = { "Content-Type": "application/json", "Accept-Language": language(),
    ...(ticket ? { Authorization: "Bearer " + ticket } : {}) };
  try {
    const { queries } = await json("api/queries", { headers });
    const prefetch = await readRecord(client, patientId, queries);
    if (Object.keys(prefetch).length === 0) {
      renderError(t("cannotRead"));
      return;
    }
    const state = await json("api/monitoring", { method: "POST", headers, body: JSON.stringify({ patientId, prefetch }) });
    renderState(state);
  } catch (error) {
    if (error instanceof NotAuthorised) {
      renderError(t("refused"));
    } else {
      renderError(t("notComputed", { why: error.message }));
    }
  }
}

main();
