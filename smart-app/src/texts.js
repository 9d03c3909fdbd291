// The app's texts: fetched once from the service (GET /app/api/strings), which answers them in the language the
// browser asks for (Accept-Language, negotiated as for the hooks) from its gettext catalogues (cards/i18n/*.po;
// the templates are declared in cds_service/smart_app/texts.py). No text is typed here: a key the service did
// not send is a console error (the browser tests fail on it). Numbers and dates are formatted with Intl for the
// locale the service named, dates in the style it named ("iso" for English, as on the cards).
let answer = null;

export async function loadTexts() {
  const response = await fetch("api/strings", { credentials: "omit" });
  if (!response.ok) throw new Error(`GET api/strings: HTTP ${response.status}`);
  answer = await response.json();
  document.documentElement.lang = answer.language;
  for (const node of document.querySelectorAll("[data-text]")) node.textContent = t(node.dataset.text);
  return answer;
}

export const language = () => answer.language;

// the text of `key` with its {placeholders} filled from `values` (already formatted: see num, date)
export function t(key, values = {}) {
  const template = answer && answer.strings[key];
  if (typeof template !== "string") {
    console.error(`the service sent no text for "${key}"`);
    return key;
  }
  return template.replace(/\{([A-Za-z_][A-Za-z0-9_]*)\}/g, (whole, name) => {
    if (!(name in values)) {
      console.error(`no value for {${name}} in the text "${key}"`);
      return whole;
    }
    return String(values[name]);
  });
}

// a visit's or schedule's state code (done, due, overdue, planned, up to date) as a word of the language
export const stateWord = (code) => t("state:" + code);

// a number as the locale writes it: 0 decimals from 100, 1 from 10, else up to 2 (trailing zeros dropped)
export function num(value) {
  const digits = Math.abs(value) >= 100 ? 0 : (Math.abs(value) >= 10 ? 1 : 2);
  return new Intl.NumberFormat(answer.locale, { maximumFractionDigits: digits, useGrouping: false }).format(value);
}

// an ISO date (YYYY-MM-DD) as the locale writes it
export function date(iso) {
  if (!iso || answer.dates === "iso") return iso;
  return new Intl.DateTimeFormat(answer.locale, { dateStyle: "medium", timeZone: "UTC" })
    .format(new Date(iso + "T00:00:00Z"));
}
