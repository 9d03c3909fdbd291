// fhirclient with a storage that never writes the access token: the state a launch needs across the redirect to
// the authorization server (endpoints, PKCE verifier, no token) goes to sessionStorage as fhirclient does, and
// is removed when the app reads it back; the state holding the token response, and the SMART_KEY pointer, live
// in this page's memory only. So a reload ends the session: the app says so and must be relaunched.
import BrowserAdapter from "fhirclient/lib/adapters/BrowserAdapter";
import { SMART_KEY } from "fhirclient/lib/settings";

const memory = new Map();

const hasToken = (value) => !!(value && value.tokenResponse && value.tokenResponse.access_token);

const storage = {
  async get(key) {
    if (memory.has(key)) return memory.get(key);
    const raw = sessionStorage.getItem(key);
    if (raw === null) return null;
    try {
      return JSON.parse(raw);
    } catch (_) {
      return null;
    }
  },
  async set(key, value) {
    if (key === SMART_KEY || hasToken(value)) {
      memory.set(key, value);
      sessionStorage.removeItem(key);      // the launch's hop state, now superseded
    } else {
      sessionStorage.setItem(key, JSON.stringify(value));
    }
    return value;
  },
  async unset(key) {
    const had = memory.delete(key);
    if (sessionStorage.getItem(key) === null) return had;
    sessionStorage.removeItem(key);
    return true;
  },
};

class MemoryAdapter extends BrowserAdapter {
  getStorage() {
    return storage;
  }
}

export const smart = new MemoryAdapter().getSmartApi();

// After ready(): the launch's state has been read; leave nothing of it in sessionStorage (the open-server mode
// never gets a token, but its state names the FHIR server and the patient).
export function forgetStoredState(client) {
  const key = client && client.state && client.state.key;
  if (key) sessionStorage.removeItem(key);
  sessionStorage.removeItem(SMART_KEY);
}
