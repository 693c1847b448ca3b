/* dp_adaptive: adaptive concurrency (issue 13). The adaptive helper writes this interface. */
#ifndef PATHWAY_DP_ADAPTIVE_H
#define PATHWAY_DP_ADAPTIVE_H
#endif
