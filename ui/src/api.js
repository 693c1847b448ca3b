// The console's only way to the control plane: the documented REST API, with the operator's token
// as a Bearer header (no cookies: nothing another site could ride on). The token lives in this
// tab's sessionStorage and goes when the tab closes.
const KEY = 'pathway.token';

export function token() {
  return sessionStorage.getItem(KEY);
}

export function saveToken(t) {
  sessionStorage.setItem(KEY, t);
}

export function forgetToken() {
  sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, message, errors) {
    super(message);
    this.status = status; // HTTP status, 0 when the control plane could not be reached
    this.errors = errors || []; // the API's "errors" list, when it gave one
  }
}

// What a 401 means to an operator.
export const UNKNOWN_TOKEN = 'The control plane does not know this token. Check that you pasted the whole token, and that it is listed in the control plane\u2019s tokens.';

// Listeners told when the token stops working (revoked, control plane restarted with other tokens).
const onUnauthorized = new Set();
export function whenUnauthorized(fn) {
  onUnauthorized.add(fn);
  return () => onUnauthorized.delete(fn);
}

// Calls the API; resolves to the decoded JSON body (null when none), rejects with ApiError.
export async function api(method, path, body, tok) {
  const headers = {Accept: 'application/json'};
  const t = tok !== undefined ? tok : token();
  if (t) headers.Authorization = 'Bearer ' + t;
  const init = {method, headers, cache: 'no-store', credentials: 'omit'};
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, 'The control plane cannot be reached (' + e.message + ').');
  }
  const text = await r.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!r.ok) {
    if (r.status === 401) {
      if (tok === undefined) onUnauthorized.forEach(fn => fn());
      throw new ApiError(401, UNKNOWN_TOKEN);
    }
    const msg = data && data.error ? data.error : `${r.status} ${r.statusText}`;
    throw new ApiError(r.status, msg, data && data.errors);
  }
  return {status: r.status, data};
}

export async function get(path) {
  return (await api('GET', path)).data;
}

// A query string from an object, leaving out empty values.
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  const s = q.toString();
  return s ? '?' + s : '';
}
