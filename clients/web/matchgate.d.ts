// TypeScript declarations for matchgate.js. The push and action shapes mirror
// protocol/schema/push.schema.json and client-action.schema.json.

export declare const SUBPROTOCOL: 'matchgate.v1';
export declare const PUSH_TYPES: readonly string[];

export type ErrorCode =
  | 'MalformedJson' | 'UnknownAction' | 'InvalidRequest' | 'Conflict' | 'NotFound'
  | 'Forbidden' | 'RateLimited' | 'MatchmakingRejected' | 'InternalError';

export type Push =
  | { type: 'MatchmakingQueued'; ticketId: string }
  | { type: 'MatchmakingSearching'; ticketId: string; estimatedWaitMillis?: number }
  | { type: 'PotentialMatchCreated'; ticketId: string; matchId: string; acceptanceRequired: boolean; acceptanceTimeout?: number; team?: string }
  | { type: 'AcceptMatch'; ticketId: string; matchId: string; acceptedCount: number; playerCount: number }
  | { type: 'AcceptMatchCompleted'; ticketId: string; matchId: string; acceptance: string }
  | { type: 'MatchmakingSucceeded'; ticketId: string; matchId: string; gameSessionArn?: string; ipAddress?: string; dnsName?: string; port?: number; playerSessionId?: string; team?: string }
  | { type: 'MatchmakingTimedOut'; ticketId: string; reason?: string; message?: string }
  | { type: 'MatchmakingCancelled'; ticketId: string; reason?: string; message?: string }
  | { type: 'MatchmakingFailed'; ticketId: string; reason: string; message: string }
  | { type: 'Error'; code: ErrorCode; message: string; ticketId?: string }
  | { type: 'Pong'; connectionId: string; playerId: string };

export type TerminalPush = Extract<Push, { type: 'MatchmakingSucceeded' | 'MatchmakingTimedOut' | 'MatchmakingCancelled' | 'MatchmakingFailed' }>;

/** One item of the client's stream. Pushes are deduplicated: a repeat is never reported twice. */
export type MatchgateEvent =
  | { kind: 'push'; push: Push }
  | { kind: 'noTicket' }
  | { kind: 'unknown'; typeName: string; frame: string }
  | { kind: 'malformed'; frame: string; error: string }
  | { kind: 'gatewayError'; message: string }
  | { kind: 'disconnected'; reason: string }
  | { kind: 'reconnecting'; attempt: number; delayMs: number }
  | { kind: 'reconnected' };

export type Auth = { token: string } | { queryToken: string } | { playerId: string };

export interface Backoff {
  baseMs: number;
  capMs: number;
  maxAttempts: number;
  stableAfterMs: number;
}

export interface Options {
  backoff?: Partial<Backoff>;
  connectTimeoutMs?: number;
  statusTimeoutMs?: number;
  quietStatusAfterMs?: number;
  quietCheckEveryMs?: number;
}

export declare const DEFAULTS: Readonly<Required<Omit<Options, 'backoff'>> & { backoff: Readonly<Backoff> }>;

export type MatchgateErrorCode =
  | 'InvalidUrl' | 'Connect' | 'GaveUp' | 'StatusTimeout' | 'NoTicket' | 'Server' | 'Closed';

export declare class MatchgateError extends Error {
  readonly code: MatchgateErrorCode;
  /** With `Server`: the server's error code. */
  readonly serverCode?: ErrorCode;
  /** With `GaveUp`: how many reconnect attempts failed. */
  readonly attempts?: number;
}

export declare function backoffCeilingMs(backoff: Backoff, attempt: number): number;
export declare function classify(frame: string): MatchgateEvent;

export declare function connect(url: string, auth: Auth, options?: Options): Promise<MatchgateClient>;

export declare class MatchgateClient implements AsyncIterable<MatchgateEvent> {
  private constructor();
  /** Why the client stopped, once it has. */
  readonly stopped: MatchgateError | null;
  /** The current ticket while it is live. */
  readonly liveTicket: string | null;
  matchmake(latencyInMs?: Record<string, number>): void;
  cancel(): void;
  accept(accept: boolean): void;
  status(): void;
  ping(): void;
  nextEvent(): Promise<MatchgateEvent | null>;
  waitForMatch(): Promise<TerminalPush>;
  close(): void;
  [Symbol.asyncIterator](): AsyncIterator<MatchgateEvent>;
}
