// The monitoring app: reads the record with the SMART client (the access token stays in this page's memory:
// see smart.js), sends what it read to the service, which answers the monitoring state computed by its own
// rules, and draws it.
import { smart, forgetStoredState } from "./smart.js";
import { renderState, renderError } from "./render.js";

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
    throw new Error(why || `the service answered HTTP ${response.status}`);
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
  let client;
  try {
    client = await smart.ready();
  } catch (error) {
    const message = error && error.message ? error.message : "";
    if (/\(re\)launch/.test(message)) {
      // no launch state: opened directly, or reloaded (the SMART session lives in the page's memory only)
      renderError("No SMART session: this app keeps its access token in the page's memory only, so a reload " +
        "or a page opened directly has none. Open it again from the card link (or launch it from the EHR).");
    } else {
      renderError("The app could not complete its SMART launch: " + (message || "unknown error"));
    }
    return;
  }
  forgetStoredState(client);
  const patientId = client.patient && client.patient.id;
  if (!patientId) {
    renderError("The launch named no patient.");
    return;
  }
  const ticket = ticketFrom(client);
  const headers = { "Content-Type": "application/json", ...(ticket ? { Authorization: "Bearer " + ticket } : {}) };
  try {
    const { queries } = await json("api/queries", { headers });
    const prefetch = await readRecord(client, patientId, queries);
    if (Object.keys(prefetch).length === 0) {
      renderError("The patient record could not be read from the FHIR server.");
      return;
    }
    const state = await json("api/monitoring", { method: "POST", headers, body: JSON.stringify({ patientId, prefetch }) });
    renderState(state);
  } catch (error) {
    if (error instanceof NotAuthorised) {
      renderError("The service refused this launch (HTTP 401): its ticket is missing, expired or for another " +
        "patient. Open the app again from a current card for this patient.");
    } else {
      renderError("The monitoring state could not be computed: " + error.message);
    }
  }
}

main();
