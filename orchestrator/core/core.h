/* core.h -- orchestrator/core, the orchestrator's pure part: the statechart
 * model (chart.h), its YAML loader and validator (chart_load.h) and the saga
 * engine (engine.h). Nothing here touches the broker or the database. */
#ifndef SAGA_CORE_H
#define SAGA_CORE_H
#endif
