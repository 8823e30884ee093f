// The console's calls to the server (crates/server/src/console.rs): JSON both ways, the CSRF
// token from GET /console/api/me in the X-Confer-Csrf header of every POST, cookies same-origin.

export interface Account {
  readonly name: string;
  readonly role: "mediator" | "co_mediator";
}

export interface Me {
  readonly csrf: string;
  readonly account: Account | null;
  readonly totp_required: boolean;
}

/** A refusal: the server's stable code and its human message. */
export class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

export class Api {
  private csrf = "";

  /** Who is logged in, and the CSRF token for the calls that follow. */
  async me(): Promise<Me> {
    const me = await this.call<Me>("GET", "/console/api/me");
    this.csrf = me.csrf;
    return me;
  }

  post<T>(path: string, body: object = {}): Promise<T> {
    return this.call<T>("POST", path, body);
  }

  get<T>(path: string): Promise<T> {
    return this.call<T>("GET", path);
  }

  private async call<T>(method: "GET" | "POST", path: string, body?: object): Promise<T> {
    const init: RequestInit = { method, credentials: "same-origin", cache: "no-store" };
    if (method === "POST") {
      init.headers = { "Content-Type": "application/json", "X-Confer-Csrf": this.csrf };
      init.body = JSON.stringify(body ?? {});
    }
    let res: Response;
    try {
      res = await fetch(path, init);
    } catch {
      throw new ApiError("network", "The server cannot be reached. Check your connection and try again.", 0);
    }
    const json: unknown = await res.json().catch(() => null);
    if (!res.ok) {
      const e = (json ?? {}) as { code?: unknown; message?: unknown };
      const code = typeof e.code === "string" ? e.code : "internal";
      const message = typeof e.message === "string" ? e.message : "The server could not do this. Try again.";
      throw new ApiError(code, message, res.status);
    }
    return json as T;
  }
}
